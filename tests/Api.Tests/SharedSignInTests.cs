using System.Net;
using System.Text.RegularExpressions;
using Loom.Data;
using Loom.Data.Entities;
using Loom.Tests.Shared;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Api.Tests;

/// <summary>Two web nodes on one database: the data-protection key ring lives in the database, so a portal sign-in
/// made on one node is accepted by the other (and by a node started later, as after a restart), and by no node once
/// the key ring's rows are gone.</summary>
public partial class SharedSignInTests
{
    /// <summary>A web node; on <paramref name="shared"/>'s database when given (the node that made it drops it).</summary>
    private sealed class WebNode(TestDatabase? shared = null) : LoomFactory
    {
        protected override IEnumerable<KeyValuePair<string, string?>> Settings => [new("Loom:Roles", "web,api")];
        protected override Task<TestDatabase> DatabaseAsync() => shared is null ? base.DatabaseAsync() : Task.FromResult(shared);
        protected override bool OwnsDatabase => shared is null;
    }

    [Fact]
    public async Task ASignInOnOneWebNodeIsAcceptedByAnother()
    {
        await using var first = new WebNode();
        await ((IAsyncLifetime)first).InitializeAsync();
        var tenant = await first.CreateTenantAsync($"dp-{Guid.NewGuid():N}"[..12]);
        var user = $"dp{Guid.NewGuid():N}"[..12];
        const string password = "Shared-Ring-42";
        await using (var scope = first.Services.CreateAsyncScope())
        {
            var users = scope.ServiceProvider.GetRequiredService<UserManager<LoomUser>>();
            Assert.True((await users.CreateAsync(new LoomUser { Id = Guid.NewGuid(), UserName = user, TenantId = tenant.Id }, password)).Succeeded);
        }
        var cookie = await SignInAsync(Client(first), user, password);

        await using var second = new WebNode(first.Database);
        await ((IAsyncLifetime)second).InitializeAsync();
        foreach (var node in new[] { first, second })
        {
            var signedIn = await HomeAsync(Client(node), cookie);
            Assert.Equal(HttpStatusCode.OK, signedIn.StatusCode);
            Assert.Contains($">{user}</span>", await signedIn.Content.ReadAsStringAsync());
        }
        // The control: without the cookie the second node does not know the user.
        var anonymous = await HomeAsync(Client(second), cookie: null);
        Assert.DoesNotContain($">{user}</span>", await anonymous.Content.ReadAsStringAsync());

        // The keys are the database's, not some folder both nodes happen to share here: with the key ring's rows gone,
        // a node started now makes a new key and no longer accepts the cookie.
        await using (var scope = second.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<PlatformDbContext>();
            Assert.True(await db.DataProtectionKeys.AnyAsync());
            await db.DataProtectionKeys.ExecuteDeleteAsync();
        }
        await using var third = new WebNode(first.Database);
        await ((IAsyncLifetime)third).InitializeAsync();
        var afterReset = await HomeAsync(Client(third), cookie);
        Assert.DoesNotContain($">{user}</span>", await afterReset.Content.ReadAsStringAsync());
    }

    private static HttpClient Client(LoomFactory node) => node.CreateClient(new WebApplicationFactoryClientOptions { AllowAutoRedirect = false, HandleCookies = false });

    private static async Task<HttpResponseMessage> HomeAsync(HttpClient http, string? cookie)
    {
        var get = new HttpRequestMessage(HttpMethod.Get, "/");
        if (cookie is not null) get.Headers.Add("Cookie", cookie);
        return await http.SendAsync(get);
    }

    /// <summary>Signs in through the portal's form (antiforgery token and cookie included); returns the sign-in cookie.</summary>
    private static async Task<string> SignInAsync(HttpClient http, string user, string password)
    {
        var form = await http.GetAsync("/account/signin");
        var token = TokenPattern().Match(await form.Content.ReadAsStringAsync());
        Assert.True(token.Success, "no antiforgery token on the sign-in page");
        var post = new HttpRequestMessage(HttpMethod.Post, "/account/signin");
        post.Headers.Add("Cookie", string.Join("; ", Cookies(form).Select(c => c.Split(';')[0])));
        post.Content = new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["_handler"] = "signin", ["__RequestVerificationToken"] = WebUtility.HtmlDecode(token.Groups[1].Value),
            ["Input.UserName"] = user, ["Input.Password"] = password,
        });
        var response = await http.SendAsync(post);
        Assert.Equal(HttpStatusCode.Redirect, response.StatusCode);
        return Assert.Single(Cookies(response), c => c.StartsWith("loom.portal=", StringComparison.Ordinal)).Split(';')[0];
    }

    private static List<string> Cookies(HttpResponseMessage r) => r.Headers.TryGetValues("Set-Cookie", out var v) ? v.ToList() : [];

    [GeneratedRegex("name=\"__RequestVerificationToken\" value=\"([^\"]+)\"")]
    private static partial Regex TokenPattern();
}
