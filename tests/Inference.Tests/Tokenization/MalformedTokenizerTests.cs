using System.Text.Json.Nodes;
using Loom.Inference.Tokenization;

namespace Loom.Inference.Tests.Tokenization;

public sealed class MalformedTokenizerTests
{
    private static JsonObject Model(JsonObject root) => root["model"]!.AsObject();

    /// <summary>Edits of a valid tokenizer.json, each with a phrase the error message must contain.</summary>
    public static readonly TheoryData<string, string> Edits = new()
    {
        { "model-is-array", "'model' must be an object, found an array" },
        { "model-missing", "'model' is missing" },
        { "model-type-unigram", "only BPE tokenizers are supported" },
        { "vocab-missing", "'model.vocab' is missing" },
        { "vocab-is-array", "'model.vocab' must be an object of token to id, found an array" },
        { "vocab-id-string", "must be a 32-bit integer, found a string" },
        { "vocab-id-huge", "is id 2000000000, outside [0," },
        { "vocab-id-negative", "is id -1, outside [0," },
        { "vocab-empty", "'model.vocab' is empty" },
        { "merges-unknown-token", "names \"zzz\", which is not in the vocabulary" },
        { "merges-one-token", "expected two tokens separated by one space" },
        { "merges-number", "'model.merges[0]' must be a \"left right\" string or a [left, right] pair, found the number 7" },
        { "merges-object", "'model.merges' must be an array, found an object" },
        { "merged-token-missing", "names \"Ġzz\", which is not in the vocabulary" },
        { "added-token-id-out-of-range", "has id 99999999, outside [0," },
        { "added-token-no-content", "'added_tokens[0].content' is missing" },
        { "added-tokens-string", "'added_tokens' must be an array, found a string" },
        { "unk-token-unknown", "'model.unk_token' is \"<nope>\", which is not in the vocabulary" },
        { "pre-tokenizer-bad-regex", "is not a regex .NET can compile" },
        { "pre-tokenizer-unknown", "\"Whitespace\", which this loader does not support" },
        { "normalizer-is-string", "'normalizer' must be an object, found a string" },
        { "decoder-unknown", "\"WordPiece\", which this loader does not support" },
        { "post-processor-unknown-special", "names special token \"<cls>\"" },
        { "root-is-array", "'$' must be an object, found an array" },
    };

    private static void Apply(string edit, TempModelFolder dir)
    {
        if (edit == "root-is-array")
        {
            File.WriteAllText(dir.TokenizerJson, "[1, 2, 3]");
            return;
        }
        dir.EditTokenizer(root =>
        {
            switch (edit)
            {
                case "model-is-array": root["model"] = new JsonArray(1, 2); break;
                case "model-missing": root.Remove("model"); break;
                case "model-type-unigram": Model(root)["type"] = "Unigram"; break;
                case "vocab-missing": Model(root).Remove("vocab"); break;
                case "vocab-is-array": Model(root)["vocab"] = new JsonArray("a", "b"); break;
                case "vocab-id-string": Model(root)["vocab"]!["a"] = "one"; break;
                case "vocab-id-huge": Model(root)["vocab"]!["a"] = 2_000_000_000; break;
                case "vocab-id-negative": Model(root)["vocab"]!["a"] = -1; break;
                case "vocab-empty": Model(root)["vocab"] = new JsonObject(); Model(root)["merges"] = new JsonArray(); break;
                case "merges-unknown-token": Model(root)["merges"]!.AsArray().Insert(0, "zzz a"); break;
                case "merges-one-token": Model(root)["merges"]!.AsArray().Insert(0, "abc"); break;
                case "merges-number": Model(root)["merges"]!.AsArray().Insert(0, 7); break;
                case "merges-object": Model(root)["merges"] = new JsonObject(); break;
                case "merged-token-missing": Model(root)["vocab"]!["zz"] = 560; Model(root)["merges"]!.AsArray().Insert(0, "Ġ zz"); break;
                case "added-token-id-out-of-range": root["added_tokens"]![0]!["id"] = 99_999_999; break;
                case "added-token-no-content": root["added_tokens"]![0]!.AsObject().Remove("content"); break;
                case "added-tokens-string": root["added_tokens"] = "<|endoftext|>"; break;
                case "unk-token-unknown": Model(root)["unk_token"] = "<nope>"; break;
                case "pre-tokenizer-bad-regex":
                    root["pre_tokenizer"] = JsonNode.Parse("""{"type":"Split","pattern":{"Regex":"(\\p{L}+"},"behavior":"Isolated","invert":false}""");
                    break;
                case "pre-tokenizer-unknown": root["pre_tokenizer"] = JsonNode.Parse("""{"type":"Whitespace"}"""); break;
                case "normalizer-is-string": root["normalizer"] = "NFC"; break;
                case "decoder-unknown": root["decoder"] = JsonNode.Parse("""{"type":"WordPiece","prefix":"##"}"""); break;
                case "post-processor-unknown-special":
                    root["post_processor"] = JsonNode.Parse(
                        """{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<cls>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],"special_tokens":{}}""");
                    break;
                default: throw new ArgumentException(edit);
            }
        });
    }

    [Theory]
    [MemberData(nameof(Edits))]
    public void MalformedTokenizerJsonNamesTheFileAndTheProblem(string edit, string expected)
    {
        using var dir = new TempModelFolder("gpt2-chatml");
        Apply(edit, dir);
        var ex = Assert.Throws<TokenizerFormatException>(() => TokenizerLoader.Load(dir.Path));
        Assert.Equal(dir.TokenizerJson, ex.FilePath);
        Assert.StartsWith(dir.TokenizerJson + ": ", ex.Message);
        Assert.Contains(expected, ex.Message);
    }

    [Theory]
    [InlineData("")]
    [InlineData("{\"model\": ")]
    [InlineData("not json at all")]
    [InlineData("\u0000\u0001\u0002")]
    public void NonJsonIsReportedAsInvalidJson(string content)
    {
        using var dir = new TempModelFolder("gpt2-chatml");
        File.WriteAllText(dir.TokenizerJson, content);
        var ex = Assert.Throws<TokenizerFormatException>(() => TokenizerLoader.Load(dir.Path));
        Assert.Equal(dir.TokenizerJson, ex.FilePath);
        Assert.Contains("is not valid JSON", ex.Message);
    }

    [Fact]
    public void DeeplyNestedJsonIsRejectedWithoutRecursingWithoutBound()
    {
        using var dir = new TempModelFolder("gpt2-chatml");
        File.WriteAllText(dir.TokenizerJson, new string('[', 100_000) + new string(']', 100_000));
        var ex = Assert.Throws<TokenizerFormatException>(() => TokenizerLoader.Load(dir.Path));
        Assert.Contains("is not valid JSON", ex.Message);
    }

    [Fact]
    public void MissingTokenizerJsonIsReported()
    {
        var dir = Directory.CreateTempSubdirectory("loom-tok-").FullName;
        try
        {
            var ex = Assert.Throws<TokenizerFormatException>(() => TokenizerLoader.Load(dir));
            Assert.Equal(Path.Combine(dir, "tokenizer.json"), ex.FilePath);
            Assert.Contains("file not found", ex.Message);
        }
        finally { Directory.Delete(dir); }
    }

    [Theory]
    [InlineData("bos-not-in-vocab", "'bos_token' is \"<nope>\", which is not a token of tokenizer.json")]
    [InlineData("eos-is-number", "'eos_token' must be a string, found the number 5")]
    [InlineData("template-is-number", "'chat_template' must be a string, found the number 3")]
    [InlineData("root-is-string", "'$' must be an object, found a string")]
    [InlineData("not-json", "is not valid JSON")]
    public void MalformedTokenizerConfigNamesTheConfigFile(string edit, string expected)
    {
        using var dir = new TempModelFolder("gpt2-chatml");
        switch (edit)
        {
            case "root-is-string": File.WriteAllText(dir.ConfigJson, "\"hello\""); break;
            case "not-json": File.WriteAllText(dir.ConfigJson, "{bos_token: <s>}"); break;
            default:
                dir.EditConfig(config =>
                {
                    if (edit == "bos-not-in-vocab") config["bos_token"] = "<nope>";
                    if (edit == "eos-is-number") config["eos_token"] = 5;
                    if (edit == "template-is-number") config["chat_template"] = 3;
                });
                break;
        }
        var ex = Assert.Throws<TokenizerFormatException>(() => TokenizerLoader.Load(dir.Path));
        Assert.Equal(dir.ConfigJson, ex.FilePath);
        Assert.Contains(expected, ex.Message);
    }
}
