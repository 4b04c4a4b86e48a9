namespace Loom.Tests.Shared;

/// <summary>
/// A chat model for tests that run Loom whole: the tiny Llama of the golden tests (tests/golden/models,
/// llama3_scaled_bf16, with its tokenizer) plus a Llama-3 chat template, copied into a folder whose name is the
/// model's name in the API.
/// </summary>
public static class GoldenChatModel
{
    /// <summary>The golden model's folder, given the repository root.</summary>
    public static string GoldenDirectory(string repoRoot) => Path.Combine(repoRoot, "tests", "golden", "models", "llama3_scaled_bf16");

    /// <summary>Copies the golden model's files into <paramref name="dir"/> (created) and adds the chat template.</summary>
    public static string CreateIn(string dir, string goldenDirectory)
    {
        Directory.CreateDirectory(dir);
        foreach (var f in new[] { "config.json", "generation_config.json", "model.safetensors", "tokenizer.json" })
            File.Copy(Path.Combine(goldenDirectory, f), Path.Combine(dir, f));
        WriteChatTemplate(dir);
        return dir;
    }

    /// <summary>Writes tokenizer_config.json with a Llama-3 chat template and its special tokens.</summary>
    public static void WriteChatTemplate(string dir)
    {
        const string template = "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), $$"""
            {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": {{System.Text.Json.JsonSerializer.Serialize(template)}}}
            """);
    }
}
