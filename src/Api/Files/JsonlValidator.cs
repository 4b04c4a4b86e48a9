using System.Text;
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
    private static readonly UTF8Encoding StrictUtf8 = new(false, throwOnInvalidBytes: true);

    public static async Task<JsonlValidation> ValidateAsync(Stream content, CancellationToken ct = default)
    {
        using var reader = new StreamReader(content, StrictUtf8, detectEncodingFromByteOrderMarks: false);
        TrainingFormat? format = null;
        var lineNo = 0;
        var lines = 0;
        var pendingBlank = 0;
        while (true)
        {
            string? line;
            try { line = await reader.ReadLineAsync(ct); }
            catch (DecoderFallbackException) { return Bad(lineNo + 1, "the file is not valid UTF-8."); }
            if (line is null) break;
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) { pendingBlank = pendingBlank == 0 ? lineNo : pendingBlank; continue; }
            if (pendingBlank > 0) return Bad(pendingBlank, "empty line; every line must hold one JSON object.");

            string? problem;
            TrainingFormat lineFormat;
            try
            {
                using var doc = JsonDocument.Parse(line);
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
