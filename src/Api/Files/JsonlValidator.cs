using System.Text.Unicode;
using System.Text.Json;

namespace Loom.Api.Files;

/// <summary>The two fine-tuning file formats OpenAI accepts.</summary>
public enum TrainingFormat { Chat, PromptCompletion }

/// <summary>Result of validating a JSONL training file: the format and line count, or the first bad line.</summary>
public sealed record JsonlValidation(bool Ok, TrainingFormat? Format, int Lines, int? BadLine, string? Problem);

/// <summary>
/// Validates a fine-tuning JSONL file line by line: either OpenAI chat format (<c>{"messages":[...]}</c>)
/// or prompt/completion format (<c>{"prompt":"...","completion":"..."}</c>), one format per file.
/// Stops at the first bad line and reports it by number (1-based).
/// </summary>
public static class JsonlValidator
{
    private static readonly HashSet<string> Roles = ["system", "user", "assistant"];

    /// <summary>Longest line read by default (bytes); a longer one is reported as a bad line, never buffered whole.</summary>
    public const int DefaultMaxLineBytes = 1024 * 1024;

    public static Task<JsonlValidation> ValidateAsync(Stream content, CancellationToken ct = default) =>
        ValidateAsync(content, DefaultMaxLineBytes, ct);

    public static async Task<JsonlValidation> ValidateAsync(Stream content, int maxLineBytes, CancellationToken ct = default)
    {
        TrainingFormat? format = null;
        var lineNo = 0;
        var lines = 0;
        var pendingBlank = 0;
        var reader = new LineReader(content, maxLineBytes);
        while (true)
        {
            var line = await reader.NextAsync(ct);
            if (line.End) break;
            lineNo++;
            if (line.TooLong) return Bad(lineNo, $"the line is longer than {maxLineBytes} bytes.");
            var bytes = line.Bytes;
            if (lineNo == 1 && bytes.Span.StartsWith(Utf8Bom)) bytes = bytes[Utf8Bom.Length..];
            if (!Utf8.IsValid(bytes.Span)) return Bad(lineNo, "the file is not valid UTF-8.");
            if (bytes.Span.IndexOfAnyExcept(" \t\r\f\v"u8) < 0) { pendingBlank = pendingBlank == 0 ? lineNo : pendingBlank; continue; }
            if (pendingBlank > 0) return Bad(pendingBlank, "empty line; every line must hold one JSON object.");

            string? problem;
            TrainingFormat lineFormat;
            try
            {
                using var doc = JsonDocument.Parse(bytes);
                (lineFormat, problem) = CheckExample(doc.RootElement);
            }
            catch (JsonException e)
            {
                return Bad(lineNo, $"not valid JSON ({e.Message.Split(". Path")[0].TrimEnd('.')}).");
            }
            if (problem is not null) return Bad(lineNo, problem);
            format ??= lineFormat;
            if (lineFormat != format)
                return Bad(lineNo, $"mixes formats: earlier lines are {Describe(format.Value)}, this one is {Describe(lineFormat)}.");
            lines++;
        }
        return lines == 0 ? Bad(1, "the file holds no training examples.") : new JsonlValidation(true, format, lines, null, null);
    }

    private static ReadOnlySpan<byte> Utf8Bom => [0xEF, 0xBB, 0xBF];

    private static JsonlValidation Bad(int line, string problem) => new(false, null, 0, line, problem);

    private static string Describe(TrainingFormat f) => f == TrainingFormat.Chat ? "chat ('messages')" : "prompt/completion";

    private static (TrainingFormat, string?) CheckExample(JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.Object) return (TrainingFormat.Chat, "each line must be a JSON object.");
        if (e.TryGetProperty("messages", out var messages)) return (TrainingFormat.Chat, CheckMessages(messages));
        if (e.TryGetProperty("prompt", out var prompt) || e.TryGetProperty("completion", out _))
        {
            if (prompt.ValueKind != JsonValueKind.String) return (TrainingFormat.PromptCompletion, "'prompt' must be a string.");
            if (!e.TryGetProperty("completion", out var completion) || completion.ValueKind != JsonValueKind.String)
                return (TrainingFormat.PromptCompletion, "'completion' must be a string.");
            if (completion.GetString()!.Length == 0) return (TrainingFormat.PromptCompletion, "'completion' must not be empty.");
            return (TrainingFormat.PromptCompletion, null);
        }
        return (TrainingFormat.Chat, "expected a 'messages' array (chat format) or 'prompt' and 'completion' strings.");
    }

    private static string? CheckMessages(JsonElement messages)
    {
        if (messages.ValueKind != JsonValueKind.Array || messages.GetArrayLength() == 0) return "'messages' must be a non-empty array.";
        var i = 0;
        var assistant = false;
        foreach (var m in messages.EnumerateArray())
        {
            if (m.ValueKind != JsonValueKind.Object) return $"'messages[{i}]' must be an object.";
            if (!m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String || !Roles.Contains(role.GetString()!))
                return $"'messages[{i}].role' must be one of system, user, assistant.";
            if (!m.TryGetProperty("content", out var content)) return $"'messages[{i}].content' is missing.";
            if (CheckContent(content) is { } bad) return $"'messages[{i}].content' {bad}";
            if (m.TryGetProperty("weight", out var w) && !(w.ValueKind == JsonValueKind.Number && w.TryGetInt32(out var wv) && wv is 0 or 1))
                return $"'messages[{i}].weight' must be 0 or 1.";
            assistant |= role.GetString() == "assistant";
            i++;
        }
        return assistant ? null : "'messages' needs at least one assistant message to learn from.";
    }

    private static string? CheckContent(JsonElement content)
    {
        if (content.ValueKind == JsonValueKind.String) return null;
        if (content.ValueKind != JsonValueKind.Array) return "must be a string or an array of text parts.";
        foreach (var part in content.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object
                || !part.TryGetProperty("type", out var type) || type.GetString() != "text"
                || !part.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                return "parts must be {\"type\":\"text\",\"text\":\"...\"}.";
        }
        return null;
    }
}
