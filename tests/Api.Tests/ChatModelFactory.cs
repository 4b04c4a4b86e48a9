namespace Loom.Api.Tests;

/// <summary>
/// Loom with the api and inference roles serving a tiny generated Llama model (the golden test model
/// from tests/golden/models, given a Llama-3 chat template) under the name "tiny-chat".
/// </summary>
public class ChatModelFactory : LoomFactory
{
    public const string ModelName = "tiny-chat";
    private string? _modelDir;

    public int TokensPerMinute { get; init; } = 1_000_000;

    protected override IEnumerable<KeyValuePair<string, string?>> Settings =>
    [
        new("Loom:Roles", "api,inference"),
        new("Inference:ModelDirectory", _modelDir ??= CreateModelDir()),
        new("Api:RateLimits:TokensPerMinute", TokensPerMinute.ToString()),
    ];

    protected static string GoldenModel => Path.Combine(RepoRoot(), "tests", "golden", "models", "llama3_scaled_bf16");

    protected virtual string CreateModelDir()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"loom-model-{Guid.NewGuid():N}", ModelName);
        Directory.CreateDirectory(dir);
        foreach (var f in new[] { "config.json", "generation_config.json", "model.safetensors", "tokenizer.json" }) File.Copy(Path.Combine(GoldenModel, f), Path.Combine(dir, f));
        WriteChatTemplate(dir);
        return dir;
    }

    protected static void WriteChatTemplate(string dir)
    {
        const string template = "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), $$"""
            {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": {{System.Text.Json.JsonSerializer.Serialize(template)}}}
            """);
    }

    public static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Platform.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Platform.sln not found above the test directory");
    }
}

public sealed class TightTokensChatModelFactory : ChatModelFactory
{
    public TightTokensChatModelFactory() => TokensPerMinute = 60;
}
