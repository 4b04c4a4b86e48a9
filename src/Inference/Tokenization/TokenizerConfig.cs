using System.Text.Json;

namespace Loom.Inference.Tokenization;

/// <summary>What Loom reads from tokenizer_config.json and generation_config.json.</summary>
/// add_bos_token/add_eos_token are kept only for Llama-style tokenizer classes (LlamaTokenizer, CodeLlamaTokenizer,
/// GemmaTokenizer and their Fast twins), the ones whose Python class rewrites the post-processor from them; for
/// other classes (PreTrainedTokenizerFast, Qwen2Tokenizer, ...) tokenizer.json's post-processor alone decides.
internal sealed record TokenizerConfig(string? Path, string? BosToken, string? EosToken, bool? AddBosToken,
    bool? AddEosToken, string? ChatTemplate, IReadOnlyList<int> GenerationEosIds)
{
    public static readonly TokenizerConfig Empty = new(null, null, null, null, null, null, []);

    private static readonly string[] ClassesHonouringAddBos =
        ["LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer", "CodeLlamaTokenizerFast", "GemmaTokenizer", "GemmaTokenizerFast"];

    public static TokenizerConfig Read(string? configPath, string? generationConfigPath)
    {
        var config = Empty;
        if (configPath is not null)
        {
            var file = new JsonFile(configPath);
            using var doc = file.Parse();
            var root = file.RequireObject(doc.RootElement, "$");
            var honoursAddBos = ClassesHonouringAddBos.Contains(file.OptionalString(root, "tokenizer_class", "$"));
            config = config with
            {
                Path = configPath,
                BosToken = TokenContent(file, root, "bos_token"),
                EosToken = TokenContent(file, root, "eos_token"),
                AddBosToken = ReadFlag(file, root, "add_bos_token", honoursAddBos),
                AddEosToken = ReadFlag(file, root, "add_eos_token", honoursAddBos),
                ChatTemplate = Template(file, root),
            };
        }
        if (generationConfigPath is not null)
        {
            var file = new JsonFile(generationConfigPath);
            using var doc = file.Parse();
            var root = file.RequireObject(doc.RootElement, "$");
            var ids = new List<int>();
            if (JsonFile.Optional(root, "eos_token_id") is { } eos)
            {
                if (eos.ValueKind == JsonValueKind.Array)
                {
                    var i = 0;
                    foreach (var item in eos.EnumerateArray()) ids.Add(file.AsInt(item, $"eos_token_id[{i++}]"));
                }
                else ids.Add(file.AsInt(eos, "eos_token_id"));
            }
            config = config with { GenerationEosIds = ids };
        }
        return config;
    }

    private static bool? ReadFlag(JsonFile file, JsonElement root, string name, bool honoured)
    {
        if (JsonFile.Optional(root, name) is null) return null;
        var value = file.OptionalBool(root, name, "$", false); // type-checked even when not honoured
        return honoured ? value : null;
    }

    /// <summary>A special token written as a string or as {"content": "...", "__type": "AddedToken"}.</summary>
    private static string? TokenContent(JsonFile file, JsonElement root, string name)
    {
        if (JsonFile.Optional(root, name) is not { } value) return null;
        return value.ValueKind == JsonValueKind.Object
            ? file.RequiredString(value, "content", name)
            : file.AsString(value, name);
    }

    /// <summary>chat_template as a string, or a list of {name, template} of which "default" is used.</summary>
    private static string? Template(JsonFile file, JsonElement root)
    {
        if (JsonFile.Optional(root, "chat_template") is not { } value) return null;
        if (value.ValueKind != JsonValueKind.Array) return file.AsString(value, "chat_template");
        var i = 0;
        foreach (var item in value.EnumerateArray())
        {
            var where = $"chat_template[{i++}]";
            file.RequireObject(item, where);
            if (file.RequiredString(item, "name", where) == "default") return file.RequiredString(item, "template", where);
        }
        throw file.Fail("'chat_template' is a list without a template named \"default\"");
    }
}
