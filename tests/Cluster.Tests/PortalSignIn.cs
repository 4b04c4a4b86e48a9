using System.Net;
using System.Text.RegularExpressions;

namespace Loom.Cluster.Tests;

/// <summary>The portal's sign-in form, filled in over plain HTTP (the client keeps no cookies and follows no redirects).</summary>
internal static partial class PortalSignIn
{
    /// <summary>Signs the seeded admin in on <paramref name="node"/>; returns the session cookie ("loom.portal=...").</summary>
    public static async Task<string> AdminCookieAsync(HttpClient http, Uri node)
    {
        var form = await http.GetAsync(new Uri(node, "/account/signin"));
        var token = TokenPattern().Match(await form.Content.ReadAsStringAsync());
        Assert.True(token.Success, "no antiforgery token on the sign-in page");
        using var post = new HttpRequestMessage(HttpMethod.Post, new Uri(node, "/account/signin"))
        {
            Content = new FormUrlEncodedContent(new Dictionary<string, string>
            {
                ["_handler"] = "signin", ["__RequestVerificationToken"] = WebUtility.HtmlDecode(token.Groups[1].Value),
                ["Input.UserName"] = "admin", ["Input.Password"] = LoopbackCluster.AdminPassword,
            }),
        };
        post.Headers.Add("Cookie", string.Join("; ", Cookies(form).Select(c => c.Split(';')[0])));
        using var signedIn = await http.SendAsync(post);
        Assert.Equal(HttpStatusCode.Redirect, signedIn.StatusCode);
        return Assert.Single(Cookies(signedIn), c => c.StartsWith("loom.portal=", StringComparison.Ordinal)).Split(';')[0];
    }

    /// <summary>A portal page's HTML as the signed-in user sees it (prerendered).</summary>
    public static async Task<string> PageAsync(HttpClient http, Uri node, string path, string cookie)
    {
        using var page = new HttpRequestMessage(HttpMethod.Get, new Uri(node, path));
        page.Headers.Add("Cookie", cookie);
        using var response = await http.SendAsync(page);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await response.Content.ReadAsStringAsync();
    }

    /// <summary>The values of the options of the select with id <paramref name="selectId"/> in <paramref name="html"/>.</summary>
    public static List<string> Options(string html, string selectId)
    {
        var start = html.IndexOf($"id=\"{selectId}\"", StringComparison.Ordinal);
        Assert.True(start >= 0, $"no select #{selectId} on the page");
        var end = html.IndexOf("</select>", start, StringComparison.Ordinal);
        return [.. OptionPattern().Matches(html[start..end]).Select(m => WebUtility.HtmlDecode(m.Groups[1].Value))];
    }

    private static List<string> Cookies(HttpResponseMessage r) => r.Headers.TryGetValues("Set-Cookie", out var v) ? v.ToList() : [];

    [GeneratedRegex("name=\"__RequestVerificationToken\" value=\"([^\"]+)\"")]
    private static partial Regex TokenPattern();

    [GeneratedRegex("<option value=\"([^\"]*)\"")]
    private static partial Regex OptionPattern();
}
