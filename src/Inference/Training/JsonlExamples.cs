using System.Text.Json;
using Loom.Inference.Tokenization;

namespace Loom.Inference.Training;

/// <summary>A training file line is malformed; <see cref="Line"/> is 1-based.</summary>
public sealed class JsonlFormatException(int line, string problem) : Exception($"line {line}: {problem}")
{
    public int Line { get; } = line;
    public string Problem { get; } = problem;
}

/// <summary>Limits on a training file.</summary>
/// <param name="MaxTokens">Longest example in tokens (the training context).</param>
public sealed record JsonlLimits(int MaxTokens, int MaxLines = TrainingRunFactory.MaxExamples, int MaxLineBytes = 1 << 20, int MaxMessages = 256);

/// <summary>Turns a JSONL training file into <see cref="TrainingExample"/>s with the model's tokenizer. Each line is one
/// of OpenAI's fine-tuning formats:
/// <list type="bullet">
/// <item>chat: <c>{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}</c>, rendered with the
/// model's chat template; the assistant turns (their text and end-of-turn token) are trained, everything else is
/// context;</item>
/// <item>prompt/completion: <c>{"prompt": "...", "completion": "..."}</c>: prompt encoded with BOS as the tokenizer
/// adds it, then the completion and the first end-of-sequence token, which are trained.</item>
/// </list>
/// Blank lines are skipped. The first bad line stops the read with a <see cref="JsonlFormatException"/> naming it.</summary>
public static class JsonlExamples
{
    public static List<TrainingExample> ReadFile(string path, ITokenizer tokenizer, JsonlLimits limits)
    {
        using var reader = new StreamReader(path);
        return Read(reader, tokenizer, limits);
    }

    public static List<TrainingExample> Read(TextReader reader, ITokenizer tokenizer, JsonlLimits limits)
    {
        var list = new List<TrainingExample>();
        int number = 0;
        while (reader.ReadLine() is { } line)
        {
            number++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            if (line.Length > limits.MaxLineBytes) throw new JsonlFormatException(number, $"the line is longer than {limits.MaxLineBytes} characters");
            if (list.Count == limits.MaxLines) throw new JsonlFormatException(number, $"the file has more than {limits.MaxLines} examples");
            list.Add(Parse(number, line, tokenizer, limits));
        }
        if (list.Count == 0) throw new JsonlFormatException(Math.Max(number, 1), "the file has no examples");
        return list;
    }

    /// <summary>One line as an example.</summary>
    public static TrainingExample Parse(int number, string line, ITokenizer tokenizer, JsonlLimits limits)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(line, new JsonDocumentOptions { MaxDepth = 8 }); }
        catch (JsonException e) { throw new JsonlFormatException(number, $"not valid JSON ({e.Message})"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new JsonlFormatException(number, "not a JSON object");
            TrainingExample ex;
            if (root.TryGetProperty("messages", out var messages)) ex = Chat(number, messages, tokenizer, limits);
            else if (root.TryGetProperty("prompt", out var prompt) && root.TryGetProperty("completion", out var completion))
                ex = PromptCompletion(number, prompt, completion, tokenizer);
            else throw new JsonlFormatException(number, "expected \"messages\" (chat) or \"prompt\" and \"completion\"");
            if (ex.Length > limits.MaxTokens) throw new JsonlFormatException(number, $"{ex.Length} tokens exceed the training context of {limits.MaxTokens}");
            if (ex.Length < 2 || ex.TrainedTokens == 0) throw new JsonlFormatException(number, "nothing to train (an empty assistant turn or completion)");
            return ex;
        }
    }

    private static TrainingExample PromptCompletion(int number, JsonElement prompt, JsonElement completion, ITokenizer tokenizer)
    {
        if (prompt.ValueKind != JsonValueKind.String) throw new JsonlFormatException(number, "\"prompt\" must be a string");
        if (completion.ValueKind != JsonValueKind.String) throw new JsonlFormatException(number, "\"completion\" must be a string");
        if (completion.GetString()!.Length == 0) throw new JsonlFormatException(number, "\"completion\" is empty");
        var p = tokenizer.Encode(prompt.GetString()!, addSpecialTokens: true);
        var c = tokenizer.Encode(completion.GetString()!, addSpecialTokens: false);
        if (tokenizer.EosTokenIds.Count == 0) throw new JsonlFormatException(number, "the tokenizer has no end-of-sequence token to end the completion with");
        var tokens = new List<int>(p.Length + c.Length + 1);
        tokens.AddRange(p);
        tokens.AddRange(c);
        tokens.Add(tokenizer.EosTokenIds[0]);
        var mask = new bool[tokens.Count];
        for (int i = p.Length; i < mask.Length; i++) mask[i] = true;
        return new TrainingExample(tokens.ToArray(), mask);
    }

    private static TrainingExample Chat(int number, JsonElement messages, ITokenizer tokenizer, JsonlLimits limits)
    {
        if (messages.ValueKind != JsonValueKind.Array) throw new JsonlFormatException(number, "\"messages\" must be a list");
        int count = messages.GetArrayLength();
        if (count == 0) throw new JsonlFormatException(number, "\"messages\" is empty");
        if (count > limits.MaxMessages) throw new JsonlFormatException(number, $"more than {limits.MaxMessages} messages");
        var list = new List<ChatMessage>(count);
        int i = 0;
        foreach (var m in messages.EnumerateArray())
        {
            if (m.ValueKind != JsonValueKind.Object) throw new JsonlFormatException(number, $"message {i} is not an object");
            if (!m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String)
                throw new JsonlFormatException(number, $"message {i} has no \"role\" string");
            string r = role.GetString()!;
            if (r is not ("system" or "user" or "assistant")) throw new JsonlFormatException(number, $"message {i} has role '{r}' (expected system, user or assistant)");
            if (!m.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
                throw new JsonlFormatException(number, $"message {i} has no \"content\" string");
            list.Add(new ChatMessage(r, content.GetString()!));
            i++;
        }
        if (!list.Any(m => m.Role == "assistant")) throw new JsonlFormatException(number, "no assistant message to train on");
        var template = tokenizer.ChatTemplate ?? throw new JsonlFormatException(number, "chat data needs a chat template, and this model's tokenizer has none");
        string end = template.EndOfTurnToken;
        // segments of the rendered conversation: (text, trained)
        var segments = new List<(string Text, bool Trained)>();
        string done = "";
        try
        {
            for (int k = 0; k < list.Count; k++)
            {
                if (list[k].Role != "assistant") continue;
                string before = template.Render(list.Take(k).ToList(), addGenerationPrompt: true);
                string with = template.Render(list.Take(k + 1).ToList(), addGenerationPrompt: false);
                if (!before.StartsWith(done, StringComparison.Ordinal) || !with.StartsWith(before, StringComparison.Ordinal))
                    throw new JsonlFormatException(number, "the chat template does not render this conversation turn by turn");
                segments.Add((before[done.Length..], false));
                string turn = with[before.Length..];
                int stop = turn.LastIndexOf(end, StringComparison.Ordinal);
                string trained = stop >= 0 ? turn[..(stop + end.Length)] : turn;
                segments.Add((trained, true));
                done = before + trained;
            }
            string all = template.Render(list, addGenerationPrompt: false);
            if (!all.StartsWith(done, StringComparison.Ordinal)) throw new JsonlFormatException(number, "the chat template does not render this conversation turn by turn");
            if (all.Length > done.Length) segments.Add((all[done.Length..], false));
        }
        catch (ArgumentException e) { throw new JsonlFormatException(number, e.Message); }
        var tokens = new List<int>();
        var mask = new List<bool>();
        foreach (var (text, trained) in segments)
        {
            if (text.Length == 0) continue;
            var ids = tokenizer.Encode(text, addSpecialTokens: false);
            tokens.AddRange(ids);
            for (int j = 0; j < ids.Length; j++) mask.Add(trained);
        }
        return new TrainingExample(tokens.ToArray(), mask.ToArray());
    }
}
