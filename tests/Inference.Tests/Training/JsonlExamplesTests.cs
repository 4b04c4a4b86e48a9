using Loom.Inference.Tests.DemoModel;
using Loom.Inference.Tokenization;
using Loom.Inference.Training;

namespace Loom.Inference.Tests.Training;

/// <summary>JSONL training files to examples with the demo model's tokenizer (ChatML): which tokens are trained, and
/// the first bad line named by number.</summary>
public sealed class JsonlExamplesTests
{
    private static readonly ITokenizer Tok = TokenizerLoader.Load(DemoModelTests.ModelDir);
    private static readonly JsonlLimits Limits = new(128);

    private static List<TrainingExample> Read(string text) => JsonlExamples.Read(new StringReader(text), Tok, Limits);

    private static string Trained(TrainingExample e) => Tok.Decode(e.TokenIds.Where((_, i) => e.LossMask[i]).ToArray(), skipSpecialTokens: false);
    private static string Context(TrainingExample e) => Tok.Decode(e.TokenIds.Where((_, i) => !e.LossMask[i]).ToArray(), skipSpecialTokens: false);

    [Fact]
    public void ChatTrainsTheAssistantTurnsWithTheirEndOfTurnAndNothingElse()
    {
        var e = Read("""{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Define: harbor"},{"role":"assistant","content":"harbor (noun): a port"},{"role":"user","content":"Define: cat"},{"role":"assistant","content":"cat (noun): a pet"}]}""").Single();
        Assert.Equal("harbor (noun): a port<|im_end|>cat (noun): a pet<|im_end|>", Trained(e));
        Assert.Contains("<|im_start|>user\nDefine: harbor<|im_end|>", Context(e));
        Assert.Contains("<|im_start|>assistant\n", Context(e));
        // the whole example is the conversation as the template renders it
        var template = Tok.ChatTemplate!;
        string all = template.Render([new("system", "Be brief."), new("user", "Define: harbor"), new("assistant", "harbor (noun): a port"),
            new("user", "Define: cat"), new("assistant", "cat (noun): a pet")], addGenerationPrompt: false);
        Assert.Equal(all, Tok.Decode(e.TokenIds, skipSpecialTokens: false));
    }

    [Fact]
    public void PromptCompletionTrainsTheCompletionAndAnEndOfSequence()
    {
        var e = Read("{\"prompt\":\"harbor (noun):\",\"completion\":\" a port\"}\n\n").Single();
        Assert.Equal(" a port" + Tok.Decode([Tok.EosTokenIds[0]], skipSpecialTokens: false), Trained(e));
        Assert.Equal("harbor (noun):", Context(e));
    }

    [Theory]
    [InlineData("{\"prompt\":\"a\",\"completion\":\"b\"}\nnot json", 2, "not valid JSON")]
    [InlineData("{\"prompt\":\"a\",\"completion\":\"b\"}\n\n[1,2]", 3, "not a JSON object")]
    [InlineData("{\"text\":\"a\"}", 1, "expected \"messages\"")]
    [InlineData("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 1, "no assistant message")]
    [InlineData("{\"messages\":[{\"role\":\"robot\",\"content\":\"hi\"}]}", 1, "role 'robot'")]
    [InlineData("{\"messages\":[{\"role\":\"user\"}]}", 1, "no \"content\"")]
    [InlineData("{\"messages\":\"hi\"}", 1, "must be a list")]
    [InlineData("{\"prompt\":\"a\",\"completion\":\"\"}", 1, "is empty")]
    [InlineData("{\"prompt\":\"a\",\"completion\":7}", 1, "must be a string")]
    [InlineData("", 1, "no examples")]
    public void TheFirstBadLineIsNamed(string text, int line, string words)
    {
        var e = Assert.Throws<JsonlFormatException>(() => Read(text));
        Assert.Equal(line, e.Line);
        Assert.Contains(words, e.Message);
        Assert.StartsWith($"line {line}: ", e.Message);
    }

    [Fact]
    public void AnExampleLongerThanTheContextIsRefused()
    {
        string longText = string.Join(' ', Enumerable.Repeat("harbor", 200));
        var e = Assert.Throws<JsonlFormatException>(() => Read($"{{\"prompt\":\"a\",\"completion\":\"b\"}}\n{{\"prompt\":\"{longText}\",\"completion\":\"b\"}}"));
        Assert.Equal(2, e.Line);
        Assert.Contains("exceed the training context of 128", e.Message);
    }
}
