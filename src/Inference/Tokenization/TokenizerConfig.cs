using System.Text.Json;

namespace Loom.Inference.Tokenization;

/// <summary>What Loom reads from tokenizer_config.json and generation_config.json.</summary>
internal sealed record TokenizerConfig(string? Path, string? BosToken, string? EosToken, bool? AddBosToken,
    bool? AddEosToken, string? ChatTemplate, IReadOnlyList<int> GenerationEosIds)
{
    public static readonly TokenizerConfig Empty = new(null, null, null, null, null, null, []);

    public static TokenizerConfig Read(string? configPath, string? generationConfigPath)
    {
        var config = Empty;
        if (configPath is not null)
        {
            var file = new JsonFile(configPath);
            using var doc = file.Parse();
            var root = file.RequireObject(doc.RootElement, "$");
            config = config with
            {
                Path = configPath,
                BosToken = TokenContent(file, root, "bos_token"),
                EosToken = TokenContent(file, root, "eos_token"),
                AddBosToken = JsonFile.Optional(root, "add_bos_token") is null ? null : file.OptionalBool(root, "add_bos_token", "$", false),
                AddEosToken = JsonFile.Optional(root, "add_eos_token") is null ? null : file.OptionalBool(root, "add_eos_token", "$", false),
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
