using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Api.Tests;

/// <summary>A factory with a small body limit so oversized bodies are cheap to send.</summary>
public sealed class SmallBodyLoomFactory : LoomFactory
{
    protected override IEnumerable<KeyValuePair<string, string?>> Settings => [new("Api:MaxRequestBodyBytes", "1024")];
}

public class BadInputTests(SmallBodyLoomFactory factory) : IClassFixture<SmallBodyLoomFactory>
{
    private async Task<HttpClient> ClientAsync()
    {
        var tenant = await factory.CreateTenantAsync($"bad-{Guid.NewGuid():N}");
        return factory.ClientWithKey((await factory.CreateKeyAsync(tenant.Id)).Secret);
    }

    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    [Theory]
    [InlineData("{\"name\": ")]
    [InlineData("not json at all")]
    [InlineData("{\"name\": \"x\"} trailing")]
    public async Task MalformedJsonIs400(string body)
    {
        var client = await ClientAsync();
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/api_keys", Json(body)), HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task WrongTypeIs400()
    {
        var client = await ClientAsync();
        var error = await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/api_keys", Json("{\"name\": 5}")), HttpStatusCode.BadRequest);
        Assert.Contains("name", error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task UnknownFieldIs400()
    {
        var client = await ClientAsync();
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/api_keys", Json("{\"name\": \"k\", \"colour\": \"blue\"}")), HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task MissingOrEmptyNameIs400NamingTheParam()
    {
        var client = await ClientAsync();
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/api_keys", Json("{}")), HttpStatusCode.BadRequest, param: "name");
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsJsonAsync("/v1/api_keys", new { name = "   " }), HttpStatusCode.BadRequest, param: "name");
    }

    [Fact]
    public async Task MissingBodyOrWrongContentTypeIs400()
    {
        var client = await ClientAsync();
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/api_keys", new StringContent("", Encoding.UTF8, "application/json")), HttpStatusCode.BadRequest);
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/api_keys", new StringContent("name=x", Encoding.UTF8, "text/plain")), HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task UnknownRouteIs404InEnvelope()
    {
        var client = await ClientAsync();
        await ErrorAssert.IsEnvelopeAsync(await client.GetAsync("/v1/no-such-thing"), HttpStatusCode.NotFound, "unknown_url");
    }
}

/// <summary>The body limit on a real server (Kestrel): the in-memory test server does not enforce it the same way.</summary>
public sealed class KestrelSmallBodyLoomFactory : LoomFactory
{
    public KestrelSmallBodyLoomFactory() => UseKestrel(0);

    protected override IEnumerable<KeyValuePair<string, string?>> Settings => [new("Api:MaxRequestBodyBytes", "1024")];

    public string BaseUrl => Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
}

public class OversizedBodyTests(KestrelSmallBodyLoomFactory factory) : IClassFixture<KestrelSmallBodyLoomFactory>
{
    [Fact]
    public async Task ValidBodyPastTheLimitIs413InTheEnvelopeWithOrWithoutContentLengthAndCreatesNothing()
    {
        var tenant = await factory.CreateTenantAsync($"big-{Guid.NewGuid():N}");
        using var client = new HttpClient { BaseAddress = new Uri(factory.BaseUrl) };
        client.DefaultRequestHeaders.Authorization = new("Bearer", (await factory.CreateKeyAsync(tenant.Id)).Secret);
        // A valid request padded with whitespace: without the limit it would create a key (201).
        var padded = "{\"name\": \"padded\"" + new string(' ', 4096) + "}";
        Assert.Equal(HttpStatusCode.Created, (await client.PostAsync("/v1/api_keys", new StringContent("{\"name\": \"small\"}", Encoding.UTF8, "application/json"))).StatusCode);

        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/api_keys", new StringContent(padded, Encoding.UTF8, "application/json")),
            HttpStatusCode.RequestEntityTooLarge, "request_too_large");

        // Chunked (no Content-Length): the limit applies while reading, and the answer is still the envelope.
        var chunked = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(padded)));
        chunked.Headers.ContentType = new("application/json");
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/api_keys") { Content = chunked };
        request.Headers.TransferEncodingChunked = true;
        await ErrorAssert.IsEnvelopeAsync(await client.SendAsync(request), HttpStatusCode.RequestEntityTooLarge, "request_too_large");

        var names = JsonDocument.Parse(await client.GetStringAsync("/v1/api_keys")).RootElement.GetProperty("data").EnumerateArray()
            .Select(k => k.GetProperty("name").GetString()).ToList();
        Assert.DoesNotContain("padded", names);
        Assert.Contains("small", names);
    }
}

