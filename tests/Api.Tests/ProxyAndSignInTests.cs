using System.Net;
using System.Text.RegularExpressions;
using Loom.Data.Entities;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Api.Tests;

/// <summary>Loom on Kestrel with the portal, behind a proxy on 127.0.0.1, allowing 3 failed authentications per client address.</summary>
public sealed class ProxiedPortalFactory : LoomFactory
{
    public ProxiedPortalFactory() => UseKestrel(0);

    protected override IEnumerable<KeyValuePair<string, string?>> Settings =>
    [
        new("Loom:Roles", "web,api"),
        new("Loom:Proxy:KnownProxies:0", "127.0.0.1"),
        new("Api:FailedAuth:PermitLimit", "3"),
    ];

    public string BaseUrl => Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
}

/// <summary>Forwarded headers from the configured proxy, HSTS, Secure cookies over HTTPS, and per-address limits on failed API keys and sign-ins.</summary>
public partial class ProxyAndSignInTests(ProxiedPortalFactory factory) : IClassFixture<ProxiedPortalFactory>
{
    private HttpClient Client() => new(new HttpClientHandler { AllowAutoRedirect = false, UseCookies = false }) { BaseAddress = new Uri(factory.BaseUrl) };

    private static HttpRequestMessage Request(HttpMethod method, string path, string client, bool https = false, string? key = null)
    {
        var r = new HttpRequestMessage(method, path);
        r.Headers.Host = "loom.example";
        r.Headers.Add("X-Forwarded-For", client);
        if (https) r.Headers.Add("X-Forwarded-Proto", "https");
        if (key is not null) r.Headers.Authorization = new("Bearer", key);
        return r;
    }

    [Fact]
    public async Task HstsIsSentOnlyForHttpsForwardedByTheProxy()
    {
        using var http = Client();
        var secure = await http.SendAsync(Request(HttpMethod.Get, "/healthz", "198.51.100.1", https: true));
        Assert.True(secure.Headers.Contains("Strict-Transport-Security"));
        var plain = await http.SendAsync(Request(HttpMethod.Get, "/healthz", "198.51.100.1"));
        Assert.False(plain.Headers.Contains("Strict-Transport-Security"));
    }

    [Fact]
    public async Task FailedApiKeysAreLimitedPerForwardedClientAddress()
    {
        var tenant = await factory.CreateTenantAsync($"ip-{Guid.NewGuid():N}");
        var good = (await factory.CreateKeyAsync(tenant.Id)).Secret;
        var wrong = "sk-loom-" + new string('A', 43);
        using var http = Client();
        for (var i = 0; i < 3; i++)
            await ErrorAssert.IsEnvelopeAsync(await http.SendAsync(Request(HttpMethod.Get, "/v1/models", "203.0.113.7", key: wrong)), HttpStatusCode.Unauthorized, "invalid_api_key");
        // The budget is spent: even the right key from that address waits.
        var blocked = await http.SendAsync(Request(HttpMethod.Get, "/v1/models", "203.0.113.7", key: good));
        await ErrorAssert.IsEnvelopeAsync(blocked, HttpStatusCode.TooManyRequests, "too_many_failed_authentications");
        Assert.NotNull(blocked.Headers.RetryAfter);
        // Another client behind the same proxy is not affected.
        Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(Request(HttpMethod.Get, "/v1/models", "203.0.113.8", key: good))).StatusCode);
    }

    [Fact]
    public async Task PortalSignInIsLimitedPerAddressAndItsCookieIsSecureOverHttps()
    {
        var tenant = await factory.CreateTenantAsync($"signin-{Guid.NewGuid():N}");
        var user = $"u{Guid.NewGuid():N}"[..12];
        const string password = "Correct-Horse-9";
        await using (var scope = factory.Services.CreateAsyncScope())
        {
            var users = scope.ServiceProvider.GetRequiredService<UserManager<LoomUser>>();
            Assert.True((await users.CreateAsync(new LoomUser { Id = Guid.NewGuid(), UserName = user, TenantId = tenant.Id }, password)).Succeeded);
        }
        using var http = Client();

        // Plain HTTP: the portal's cookies are not marked Secure.
        var (_, plainCookies) = await FormAsync(http, "192.0.2.10", https: false);
        Assert.DoesNotContain(plainCookies, c => c.Contains("secure", StringComparison.OrdinalIgnoreCase));

        for (var i = 0; i < 3; i++)
        {
            var failed = await SignInAsync(http, "192.0.2.10", user, "wrong-password");
            Assert.Equal(HttpStatusCode.OK, failed.StatusCode);
            Assert.Contains("Invalid user name or password", await failed.Content.ReadAsStringAsync());
        }
        var blocked = await SignInAsync(http, "192.0.2.10", user, password);
        Assert.Equal(HttpStatusCode.TooManyRequests, blocked.StatusCode);
        Assert.Contains("Too many failed sign-ins", await blocked.Content.ReadAsStringAsync());
        Assert.DoesNotContain(Cookies(blocked), c => c.StartsWith("loom.portal=", StringComparison.Ordinal));

        // From another address, over HTTPS through the proxy: signed in, with a Secure, HttpOnly cookie.
        var ok = await SignInAsync(http, "192.0.2.11", user, password);
        Assert.Equal(HttpStatusCode.Redirect, ok.StatusCode);
        var cookie = Assert.Single(Cookies(ok), c => c.StartsWith("loom.portal=", StringComparison.Ordinal));
        Assert.Contains("secure", cookie, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("httponly", cookie, StringComparison.OrdinalIgnoreCase);
    }

    private static List<string> Cookies(HttpResponseMessage r) => r.Headers.TryGetValues("Set-Cookie", out var v) ? v.ToList() : [];

    /// <summary>Loads the sign-in form: its antiforgery token and the cookies it set.</summary>
    private static async Task<(string Token, List<string> Cookies)> FormAsync(HttpClient http, string client, bool https)
    {
        var page = await http.SendAsync(Request(HttpMethod.Get, "/account/signin", client, https));
        var html = await page.Content.ReadAsStringAsync();
        var token = TokenPattern().Match(html);
        Assert.True(token.Success, "no antiforgery token on the sign-in page");
        return (WebUtility.HtmlDecode(token.Groups[1].Value), Cookies(page));
    }

    private static async Task<HttpResponseMessage> SignInAsync(HttpClient http, string client, string user, string password)
    {
        var (token, cookies) = await FormAsync(http, client, https: true);
        var post = Request(HttpMethod.Post, "/account/signin", client, https: true);
        post.Headers.Add("Cookie", string.Join("; ", cookies.Select(c => c.Split(';')[0])));
        post.Content = new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["_handler"] = "signin", ["__RequestVerificationToken"] = token, ["Input.UserName"] = user, ["Input.Password"] = password,
        });
        return await http.SendAsync(post);
    }

    [GeneratedRegex("name=\"__RequestVerificationToken\" value=\"([^\"]+)\"")]
    private static partial Regex TokenPattern();
}
