using System.Net;
using System.Text.Json;

namespace Loom.Api.Tests;

/// <summary>Checks a response is OpenAI's error envelope with the expected status, type and code.</summary>
public static class ErrorAssert
{
    public static async Task<JsonElement> IsEnvelopeAsync(HttpResponseMessage response, HttpStatusCode status, string? code = null, string? param = null)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"expected {(int)status}, got {(int)response.StatusCode}: {body}");
        Assert.StartsWith("application/json", response.Content.Headers.ContentType?.MediaType ?? "");
        using var doc = JsonDocument.Parse(body);
        var error = doc.RootElement.GetProperty("error");
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("type").GetString()));
        Assert.True(error.TryGetProperty("param", out var p), "envelope lacks 'param'");
        Assert.True(error.TryGetProperty("code", out var c), "envelope lacks 'code'");
        if (code is not null) Assert.Equal(code, c.GetString());
        if (param is not null) Assert.Equal(param, p.GetString());
        Assert.DoesNotContain("   at ", body); // no stack traces
        return error.Clone();
    }
}
