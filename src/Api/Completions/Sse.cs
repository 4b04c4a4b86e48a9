using System.Buffers;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using Loom.Api.Errors;
using Microsoft.AspNetCore.Http;

namespace Loom.Api.Completions;

/// <summary>Server-sent events in OpenAI's framing: <c>data: {json}\n\n</c>, ended by <c>data: [DONE]\n\n</c>. Events
/// are serialized (source-generated) straight into the response's pipe; the pipe is flushed only when the next event is
/// not ready yet (<see cref="FlushWhenIdle{T}"/>), so a token that is ready goes out at once and tokens that come
/// together go out in one write.</summary>
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

    /// <summary>Writes one event into the response's pipe without flushing it.</summary>
    public static void Write<T>(HttpResponse response, T payload, JsonTypeInfo<T> type)
    {
        var pipe = response.BodyWriter;
        pipe.Write(Prefix);
        using (var json = new Utf8JsonWriter(pipe, new JsonWriterOptions { SkipValidation = true }))
            JsonSerializer.Serialize(json, payload, type);
        pipe.Write(Suffix);
    }

    /// <summary>Writes one event and flushes it.</summary>
    public static async Task WriteAsync<T>(HttpResponse response, T payload, JsonTypeInfo<T> type, CancellationToken ct)
    {
        Write(response, payload, type);
        await response.BodyWriter.FlushAsync(ct);
    }

    public static async Task DoneAsync(HttpResponse response, CancellationToken ct)
    {
        response.BodyWriter.Write(Done);
        await response.BodyWriter.FlushAsync(ct);
    }

    /// <summary>A failure after the stream began can't change the status: it is sent as an error event.</summary>
    public static Task ErrorAsync(HttpResponse response, string message, CancellationToken ct) =>
        WriteAsync(response, new OpenAiErrorEnvelope(new OpenAiError(message, "server_error", null, null)), WireJson.Default.OpenAiErrorEnvelope, ct);

    /// <summary>The error event for a failure after the stream began: a lost inference node says it may be retried
    /// (code <c>engine_unavailable</c>, with the wait in the message), anything else is a plain server error.</summary>
    public static Task ErrorAsync(HttpResponse response, Exception failure, CancellationToken ct) => failure is Loom.Cluster.InferenceUnavailableException lost
        ? WriteAsync(response, new OpenAiErrorEnvelope(new OpenAiError(lost.Message, "server_error", null, ApiErrors.EngineUnavailableCode)), WireJson.Default.OpenAiErrorEnvelope, ct)
        : ErrorAsync(response, "The model failed while generating this completion.", ct);

    /// <summary>Waits for the first event of <paramref name="source"/> before anything is sent, so that a generation that
    /// never began (every engine full, no node reachable, a bad argument) fails the request with its own status (a
    /// retryable 503 with Retry-After, in the envelope) rather than a 200 whose stream carries an error event. The returned
    /// sequence yields every event, the first included; enumerate it at once (it owns the source's enumerator).</summary>
    public static async Task<IAsyncEnumerable<T>> BeganAsync<T>(this IAsyncEnumerable<T> source, CancellationToken ct)
    {
        var e = source.GetAsyncEnumerator(ct);
        bool any;
        try { any = await e.MoveNextAsync(); }
        catch
        {
            await e.DisposeAsync();
            throw;
        }
        return Rest(e, any);

        static async IAsyncEnumerable<T> Rest(IAsyncEnumerator<T> e, bool any)
        {
            await using (e)
            {
                if (!any) yield break;
                yield return e.Current;
                while (await e.MoveNextAsync()) yield return e.Current;
            }
        }
    }

    /// <summary>The events of <paramref name="source"/>; before waiting for one that is not ready, flushes what the
    /// caller wrote for the earlier ones.</summary>
    public static async IAsyncEnumerable<T> FlushWhenIdle<T>(this IAsyncEnumerable<T> source, HttpResponse response,
        [EnumeratorCancellation] CancellationToken ct)
    {
        await using var e = source.GetAsyncEnumerator(ct);
        while (true)
        {
            var next = e.MoveNextAsync();
            if (!next.IsCompleted) await response.BodyWriter.FlushAsync(ct);
            if (!await next) yield break;
            yield return e.Current;
        }
    }

    public static string NewId(string prefix) => prefix + Convert.ToHexStringLower(Guid.NewGuid().ToByteArray())[..24];

    public static int[] Utf8(string s) => Encoding.UTF8.GetBytes(s).Select(b => (int)b).ToArray();
}

/// <summary>Source-generated serialization of the streamed wire objects (one per token, so reflection would show).</summary>
[JsonSerializable(typeof(ChatCompletionChunk))]
[JsonSerializable(typeof(TextCompletion))]
[JsonSerializable(typeof(OpenAiErrorEnvelope))]
internal sealed partial class WireJson : JsonSerializerContext;
