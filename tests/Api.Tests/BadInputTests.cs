using System.Net;
using System.Net.Http.Json;
using System.Text;

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
    public async Task OversizedBodyIs413AndCreatesNothing()
    {
        var client = await ClientAsync();
        var before = (await client.GetStringAsync("/v1/api_keys")).Length;
        var big = "{\"name\": \"" + new string('x', 4096) + "\"}";
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/api_keys", Json(big)), HttpStatusCode.RequestEntityTooLarge, "request_too_large");

        // Chunked (no Content-Length): the limit applies while reading.
        var chunked = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(big)));
        chunked.Headers.ContentType = new("application/json");
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/api_keys") { Content = chunked };
        request.Headers.TransferEncodingChunked = true;
        var response = await client.SendAsync(request);
        Assert.True(response.StatusCode is HttpStatusCode.RequestEntityTooLarge or HttpStatusCode.BadRequest, $"got {response.StatusCode}");
        await ErrorAssert.IsEnvelopeAsync(response, response.StatusCode);

        Assert.Equal(before, (await client.GetStringAsync("/v1/api_keys")).Length);
    }

    [Fact]
    public async Task UnknownRouteIs404InEnvelope()
    {
        var client = await ClientAsync();
        await ErrorAssert.IsEnvelopeAsync(await client.GetAsync("/v1/no-such-thing"), HttpStatusCode.NotFound, "unknown_url");
    }
}
