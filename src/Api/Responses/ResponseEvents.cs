using System.Buffers;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace Loom.Api.Responses;

/// <summary>The Responses API's server-sent events: <c>event: {type}\ndata: {json}\n\n</c>, each with its
/// <c>type</c> and a rising <c>sequence_number</c>; the stream ends after <c>response.completed</c> (no [DONE]).</summary>
internal sealed class ResponseEvents(HttpResponse response)
{
    private int _sequence;

    /// <summary>Writes one event into the response's pipe; <see cref="Completions.Sse.FlushWhenIdle{T}"/> flushes.</summary>
    public void Write(string type, JsonObject fields)
    {
        var evt = new JsonObject { ["type"] = type, ["sequence_number"] = _sequence++ };
        foreach (var (name, value) in fields.ToList())
        {
            fields.Remove(name);
            evt[name] = value;
        }
        response.BodyWriter.Write(Encoding.UTF8.GetBytes($"event: {type}\ndata: {evt.ToJsonString()}\n\n"));
    }

    public Task FlushAsync(CancellationToken ct) => response.BodyWriter.FlushAsync(ct).AsTask();

    /// <summary>output_item.added, content_part.added: a message item opens with an empty text part.</summary>
    public void MessageOpened(int index, string itemId)
    {
        Write("response.output_item.added", new JsonObject
        {
            ["output_index"] = index,
            ["item"] = new JsonObject { ["id"] = itemId, ["type"] = "message", ["status"] = "in_progress", ["role"] = "assistant", ["content"] = new JsonArray() },
        });
        Write("response.content_part.added", new JsonObject
        {
            ["item_id"] = itemId, ["output_index"] = index, ["content_index"] = 0, ["part"] = ResponseItems.TextPart("output_text", ""),
        });
    }

    public void TextDelta(int index, string itemId, string delta) => Write("response.output_text.delta", new JsonObject
    {
        ["item_id"] = itemId, ["output_index"] = index, ["content_index"] = 0, ["delta"] = delta, ["logprobs"] = new JsonArray(),
    });

    /// <summary>output_text.done, content_part.done, output_item.done for a message item.</summary>
    public void MessageClosed(int index, JsonObject item)
    {
        var itemId = (string)item["id"]!;
        var part = item["content"]![0]!;
        Write("response.output_text.done", new JsonObject
        {
            ["item_id"] = itemId, ["output_index"] = index, ["content_index"] = 0, ["text"] = (string)part["text"]!, ["logprobs"] = new JsonArray(),
        });
        Write("response.content_part.done", new JsonObject { ["item_id"] = itemId, ["output_index"] = index, ["content_index"] = 0, ["part"] = part.DeepClone() });
        Write("response.output_item.done", new JsonObject { ["output_index"] = index, ["item"] = item.DeepClone() });
    }

    /// <summary>output_item.added for a function call item, in progress with empty arguments.</summary>
    public void FunctionCallOpened(int index, JsonObject item)
    {
        var opened = (JsonObject)item.DeepClone();
        opened["status"] = "in_progress";
        opened["arguments"] = "";
        Write("response.output_item.added", new JsonObject { ["output_index"] = index, ["item"] = opened });
    }

    public void ArgumentsDelta(int index, string itemId, string delta) =>
        Write("response.function_call_arguments.delta", new JsonObject { ["item_id"] = itemId, ["output_index"] = index, ["delta"] = delta });

    /// <summary>function_call_arguments.done and output_item.done for a function call item.</summary>
    public void FunctionCallClosed(int index, JsonObject item)
    {
        var itemId = (string)item["id"]!;
        Write("response.function_call_arguments.done", new JsonObject
        {
            ["item_id"] = itemId, ["output_index"] = index, ["name"] = (string)item["name"]!, ["arguments"] = (string)item["arguments"]!,
        });
        Write("response.output_item.done", new JsonObject { ["output_index"] = index, ["item"] = item.DeepClone() });
    }
}
