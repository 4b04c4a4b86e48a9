using System.Net;
using System.Net.Http.Headers;

namespace Loom.Api.Tests;

public class AuthenticationTests(LoomFactory factory) : IClassFixture<LoomFactory>
{
    [Fact]
    public async Task RequestWithoutKeyIsRejected()
    {
        var error = await ErrorAssert.IsEnvelopeAsync(await factory.CreateClient().GetAsync("/v1/models"), HttpStatusCode.Unauthorized, "invalid_api_key");
        Assert.Contains("didn't provide an API key", error.GetProperty("message").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
    }

    [Theory]
    [InlineData("Basic dXNlcjpwYXNz")]
    [InlineData("Bearer")]
    [InlineData("Bearer sk-loom-tooshort")]
    [InlineData("Bearer sk-other-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")]
    [InlineData("Bearer sk-loom-!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!")]
    public async Task MalformedKeyIsRejected(string header)
    {
        var client = factory.CreateClient();
        client.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", header);
        await ErrorAssert.IsEnvelopeAsync(await client.GetAsync("/v1/models"), HttpStatusCode.Unauthorized, "invalid_api_key");
    }

    [Fact]
    public async Task UnknownWellFormedKeyIsRejected()
    {
        var client = factory.ClientWithKey("sk-loom-" + new string('A', 43));
        var error = await ErrorAssert.IsEnvelopeAsync(await client.GetAsync("/v1/models"), HttpStatusCode.Unauthorized, "invalid_api_key");
        Assert.Contains("Incorrect API key", error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task RevokedKeyIsRejected()
    {
        var tenant = await factory.CreateTenantAsync("revoked");
        var keep = await factory.CreateKeyAsync(tenant.Id, "keep");
        var doomed = await factory.CreateKeyAsync(tenant.Id, "doomed");
        var client = factory.ClientWithKey(doomed.Secret);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/v1/models")).StatusCode);

        Assert.Equal(HttpStatusCode.OK, (await factory.ClientWithKey(keep.Secret).DeleteAsync($"/v1/api_keys/{doomed.Key.Id}")).StatusCode);
        await ErrorAssert.IsEnvelopeAsync(await client.GetAsync("/v1/models"), HttpStatusCode.Unauthorized, "invalid_api_key");
    }

    [Fact]
    public async Task BearerSchemeIsCaseInsensitiveAndWhitespaceTolerant()
    {
        var tenant = await factory.CreateTenantAsync("bearer-case");
        var key = await factory.CreateKeyAsync(tenant.Id);
        var client = factory.CreateClient();
        client.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", $"bearer   {key.Secret} ");
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/v1/models")).StatusCode);
    }

    [Fact]
    public async Task HealthEndpointsNeedNoKey()
    {
        var client = factory.CreateClient();
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/healthz")).StatusCode);
        var ready = await client.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        Assert.Contains("\"applied\"", await ready.Content.ReadAsStringAsync());
        Assert.Equal(new MediaTypeHeaderValue("application/json").MediaType, ready.Content.Headers.ContentType?.MediaType);
    }
}

public class OpenApiTests(LoomFactory factory) : IClassFixture<LoomFactory>
{
    [Fact]
    public async Task DocumentDescribesTheV1Surface()
    {
        var response = await factory.CreateClient().GetAsync("/openapi/v1.json");
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        using var doc = System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var paths = doc.RootElement.GetProperty("paths").EnumerateObject().Select(p => p.Name).ToHashSet();
        foreach (var expected in new[] { "/v1/models", "/v1/models/{id}", "/v1/api_keys", "/v1/files", "/v1/files/{id}", "/v1/files/{id}/content", "/v1/usage" })
            Assert.Contains(expected, paths);
        Assert.DoesNotContain(paths, p => !p.StartsWith("/v1/"));
    }
}
