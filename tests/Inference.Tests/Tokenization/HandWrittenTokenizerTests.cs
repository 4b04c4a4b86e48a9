using Loom.Inference.Tokenization;

namespace Loom.Inference.Tests.Tokenization;

/// <summary>Features the golden tokenizers do not cover, on a tiny hand-written tokenizer.json whose ids are
/// worked out by hand in each test.</summary>
public sealed class HandWrittenTokenizerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("loom-tok-").FullName;

    // ids: <unk>0 <s>1 </s>2 ▁3 a4 b5 ▁a6 ab7 ▁ab8 <x>9
    private const string Vocab = """{"<unk>":0,"<s>":1,"</s>":2,"▁":3,"a":4,"b":5,"▁a":6,"ab":7,"▁ab":8}""";

    private ITokenizer Load(string preTokenizer, string decoder, bool fuseUnk = true, string merges = """["▁ a","▁a b","a b"]""",
        string addedFlags = "\"lstrip\":false,\"rstrip\":false")
    {
        File.WriteAllText(Path.Combine(_dir, "tokenizer.json"), """
            {"version":"1.0","added_tokens":[
              {"id":0,"content":"<unk>","special":true},{"id":1,"content":"<s>","special":true},
              {"id":2,"content":"</s>","special":true},{"id":9,"content":"<x>","special":false,@FLAGS@}],
             "normalizer":null,"pre_tokenizer":@PRE@,"decoder":@DEC@,
             "post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"</s>","type_id":0}}],
               "special_tokens":{"<s>":{"id":"<s>","ids":[1],"tokens":["<s>"]},"</s>":{"id":"</s>","ids":[2],"tokens":["</s>"]}}},
             "model":{"type":"BPE","unk_token":"<unk>","fuse_unk":@FUSE@,"byte_fallback":false,
               "vocab":@VOCAB@,"merges":@MERGES@}}
            """.Replace("@FLAGS@", addedFlags).Replace("@PRE@", preTokenizer).Replace("@DEC@", decoder)
            .Replace("@FUSE@", fuseUnk ? "true" : "false").Replace("@VOCAB@", Vocab).Replace("@MERGES@", merges));
        return TokenizerLoader.Load(_dir);
    }

    private const string MetaspaceAlways = """{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true}""";
    private const string MetaspaceDecoder = """{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true}""";

    [Fact]
    public void MetaspaceSplitsBeforeEachReplacementAndMergesByRank()
    {
        var tok = Load(MetaspaceAlways, MetaspaceDecoder);
        Assert.Equal([8, 8], tok.Encode("ab ab"));               // ▁ab ▁ab
        Assert.Equal([1, 8, 2], tok.Encode("ab", addSpecialTokens: true)); // template adds <s> ... </s>
        Assert.Equal(1, tok.BosTokenId);
    }

    [Fact]
    public void MergeOrderFollowsRankNotPosition()
    {
        // With "a b" ranked first, ▁ab becomes ▁ + ab and "▁ab" is never reached.
        var tok = Load(MetaspaceAlways, MetaspaceDecoder, merges: """["a b","▁ a","▁a b"]""");
        Assert.Equal([3, 7], tok.Encode("ab"));
        Assert.Equal([6, 4], tok.Encode("aa"));                  // ▁a a
    }

    [Fact]
    public void UnknownCharactersBecomeUnkAndAreFusedWhenAsked()
    {
        Assert.Equal([6, 0], Load(MetaspaceAlways, MetaspaceDecoder).Encode("acc"));
        Assert.Equal([6, 0, 0], Load(MetaspaceAlways, MetaspaceDecoder, fuseUnk: false).Encode("acc"));
    }

    [Fact]
    public void MetaspaceDecoderTurnsReplacementIntoSpacesAndDropsTheFirst()
    {
        var tok = Load(MetaspaceAlways, MetaspaceDecoder);
        Assert.Equal("ab ab", tok.Decode([8, 8]));
        // The output starts with "<s>", not a space, so nothing is stripped.
        Assert.Equal("<s> ab ab</s>", tok.Decode([1, 8, 8, 2], skipSpecialTokens: false));
        Assert.Equal("ab<x>", tok.Decode([8, 9]));              // <x> is not special: kept
    }

    [Fact]
    public void AddedTokenStripFlagsAbsorbNeighbouringWhitespace()
    {
        var plain = Load(MetaspaceAlways, MetaspaceDecoder);
        // "ab " -> ▁ab▁ -> ▁ab ▁ ; " ab" -> ▁ab (already starts with ▁, so nothing is prepended)
        Assert.Equal([8, 3, 9, 8], plain.Encode("ab <x> ab"));
        var stripping = Load(MetaspaceAlways, MetaspaceDecoder, addedFlags: "\"lstrip\":true,\"rstrip\":true");
        Assert.Equal([8, 9, 8], stripping.Encode("ab <x> ab"));
    }

    [Fact]
    public void SplitRemovedDropsTheMatches()
    {
        var tok = Load("""{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"String":"-"},"behavior":"Removed","invert":false},""" + MetaspaceAlways + "]}",
            MetaspaceDecoder);
        Assert.Equal([8, 6], tok.Encode("ab-a"));
    }

    [Fact]
    public void GenerationConfigEosIdsAreAddedToTheStopSet()
    {
        Load(MetaspaceAlways, MetaspaceDecoder);
        File.WriteAllText(Path.Combine(_dir, "tokenizer_config.json"), """{"eos_token":"</s>","bos_token":"<s>"}""");
        File.WriteAllText(Path.Combine(_dir, "generation_config.json"), """{"eos_token_id":[2,9]}""");
        Assert.Equal([2, 9], TokenizerLoader.Load(_dir).EosTokenIds);
        File.WriteAllText(Path.Combine(_dir, "generation_config.json"), """{"eos_token_id":"two"}""");
        var ex = Assert.Throws<TokenizerFormatException>(() => TokenizerLoader.Load(_dir));
        Assert.EndsWith("generation_config.json", ex.FilePath);
    }

    [Fact]
    public void AddBosTokenFalseRemovesBosForLlamaTokenizerClassOnly()
    {
        Load(MetaspaceAlways, MetaspaceDecoder);
        var config = Path.Combine(_dir, "tokenizer_config.json");
        File.WriteAllText(config, """{"bos_token":"<s>","add_bos_token":false,"tokenizer_class":"LlamaTokenizerFast"}""");
        Assert.Equal([8, 2], TokenizerLoader.Load(_dir).Encode("ab", addSpecialTokens: true));
        File.WriteAllText(config, """{"bos_token":"<s>","add_bos_token":false,"tokenizer_class":"PreTrainedTokenizerFast"}""");
        Assert.Equal([1, 8, 2], TokenizerLoader.Load(_dir).Encode("ab", addSpecialTokens: true));
    }

    [Fact]
    public void ConcurrentEncodingGivesTheSameIds()
    {
        var tok = GoldenTokenizers.Load("qwen2");
        var texts = GoldenTokenizers.Cases("qwen2").Select(c => c.Text).ToArray();
        var expected = texts.Select(t => tok.Encode(t)).ToArray();
        Parallel.For(0, 400, i => Assert.Equal(expected[i % texts.Length], tok.Encode(texts[i % texts.Length])));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
