using System.Text;
using System.Text.Json;
using Loom.Api.Errors;
using Microsoft.AspNetCore.Http;

namespace Loom.Api.Completions;

/// <summary>Server-sent events in OpenAI's framing: <c>data: {json}\n\n</c>, ended by <c>data: [DONE]\n\n</c>.</summary>
internal static class Sse
{
    private static readonly byte[] Prefix = "data: "u8.ToArray();
    private static readonly byte[] Suffix = "\n\n"u8.ToArray();
    private static readonly byte[] Done = "data: [DONE]\n\n"u8.ToArray();

    public static void Start(HttpResponse response)
    {
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
    }

    public static async Task WriteAsync<T>(HttpResponse response, T payload, CancellationToken ct)
    {
        await response.Body.WriteAsync(Prefix, ct);
        await JsonSerializer.SerializeAsync(response.Body, payload, cancellationToken: ct);
        await response.Body.WriteAsync(Suffix, ct);
        await response.Body.FlushAsync(ct);
    }

    public static async Task DoneAsync(HttpResponse response, CancellationToken ct)
    {
        await response.Body.WriteAsync(Done, ct);
        await response.Body.FlushAsync(ct);
    }

    /// <summary>A failure after the stream began can't change the status: it is sent as an error event.</summary>
    public static Task ErrorAsync(HttpResponse response, string message, CancellationToken ct) =>
        WriteAsync(response, new OpenAiErrorEnvelope(new OpenAiError(message, "server_error", null, null)), ct);

    public static string NewId(string prefix) => prefix + Convert.ToHexStringLower(Guid.NewGuid().ToByteArray())[..24];

    public static int[] Utf8(string s) => Encoding.UTF8.GetBytes(s).Select(b => (int)b).ToArray();
}
