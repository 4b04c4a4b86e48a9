using System.Runtime.CompilerServices;
using System.Text.Json;
using Loom.Inference.Model;
using Loom.Inference.Tokenization;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.DemoModel;

/// <summary>Checks Loom's engine against the results that tools/demo-model/export.py recorded with PyTorch for
/// models/loom-demo (weights as saved in bf16, computed in float32): greedy completions for held-out words
/// must be the same token ids, and the held-out mean cross-entropy must agree within 1%.</summary>
public sealed class DemoModelTests(ITestOutputHelper log)
{
    private static string RepoRoot([CallerFilePath] string thisFile = "") =>
        Path.GetFullPath(Path.Combine(Path.GetDirectoryName(thisFile)!, "..", "..", ".."));

    /// <summary>models/loom-demo in the source tree (found from this file's path, so it works with any
    /// --artifacts-path); LOOM_DEMO_MODEL_DIR overrides it.</summary>
    public static readonly string ModelDir =
        Environment.GetEnvironmentVariable("LOOM_DEMO_MODEL_DIR") is { Length: > 0 } d ? d : Path.Combine(RepoRoot(), "models", "loom-demo");

    private static string EvalFile(string name) => Path.Combine(ModelDir, "eval", name);

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    private sealed record GreedyCase(string Word, string Prompt, int[] PromptIds, int[] ExpectedIds, string ExpectedText);

    private static (int MaxNew, int[] Stop, GreedyCase[] Cases) LoadGreedy()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(EvalFile("greedy.json")));
        var r = doc.RootElement;
        var cases = r.GetProperty("cases").EnumerateArray().Select(c => new GreedyCase(
            c.GetProperty("word").GetString()!, c.GetProperty("prompt").GetString()!, Ints(c.GetProperty("prompt_ids")),
            Ints(c.GetProperty("expected_ids")), c.GetProperty("expected_text").GetString()!)).ToArray();
        return (r.GetProperty("max_new_tokens").GetInt32(), Ints(r.GetProperty("stop_token_ids")), cases);
    }

    private static Transformer Open(WeightFormat format)
    {
        var config = ModelConfig.Load(ModelDir);
        return new Transformer(ModelWeights.Load(ModelDir, config, format));
    }

    private static int ArgMax(ReadOnlySpan<float> v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }

    /// <summary>Greedy decoding with the KV cache, following the recorded rule: stop after a stop id (kept),
    /// after maxNew ids, or when the sequence reaches the context limit.</summary>
    private static List<int> Greedy(Transformer m, int[] prompt, int maxNew, IReadOnlySet<int> stop)
    {
        var cache = m.CreateCache();
        var s = m.CreateState(m.MaxContext, 1);
        var generated = new List<int>();
        s.Add(cache, prompt);
        while (true)
        {
            m.Forward(s);
            int next = ArgMax(s.Logits(0));
            generated.Add(next);
            if (stop.Contains(next) || generated.Count >= maxNew || prompt.Length + generated.Count >= m.MaxContext) break;
            s.Clear();
            s.Add(cache, [next]);
        }
        return generated;
    }

    [Fact]
    public void ModelFolderHasTheExpectedShape()
    {
        var config = ModelConfig.Load(ModelDir);
        Assert.Equal("llama", config.ModelType);
        Assert.True(config.TieWordEmbeddings);
        Assert.Equal(4096, config.VocabSize);
        long bytes = Directory.EnumerateFiles(ModelDir, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        log.WriteLine($"{config.ParameterCount} parameters, {bytes} bytes on disk");
        Assert.True(bytes < 25_000_000, $"models/loom-demo is {bytes} bytes");
        var tok = TokenizerLoader.Load(ModelDir);
        Assert.Equal(config.VocabSize, tok.VocabSize);
        Assert.Contains(tok.TokenToId("<|im_end|>")!.Value, tok.EosTokenIds);
    }

    [Fact]
    public void TokenizerReproducesTheRecordedPrompts()
    {
        var tok = TokenizerLoader.Load(ModelDir);
        var (_, _, cases) = LoadGreedy();
        foreach (var c in cases)
        {
            var ids = tok.EncodeChat([new ChatMessage("user", $"Define: {c.Word}")]);
            Assert.Equal(c.PromptIds, ids);
            Assert.Equal(c.Prompt, tok.Decode(c.PromptIds, skipSpecialTokens: false));
            Assert.Equal(c.ExpectedText, tok.Decode(c.ExpectedIds, skipSpecialTokens: true));
        }
    }

    [Theory]
    [InlineData(WeightFormat.F32)]
    [InlineData(WeightFormat.BF16)]
    public void GreedyCompletionsMatchTheRecordedIds(WeightFormat format)
    {
        var (maxNew, stop, cases) = LoadGreedy();
        Assert.NotEmpty(cases);
        using var m = Open(format);
        var tok = TokenizerLoader.Load(ModelDir);
        var stopSet = stop.ToHashSet();
        foreach (var c in cases)
        {
            var got = Greedy(m, c.PromptIds, maxNew, stopSet);
            log.WriteLine($"Define: {c.Word} -> {tok.Decode(got.ToArray())}");
            Assert.Equal(c.ExpectedIds, got);
        }
    }

    /// <summary>Scores about 8,000 tokens, so it runs once, with f32 weights (the greedy test covers bf16).</summary>
    [Fact]
    public void HeldOutLossMatchesTheRecordedLoss()
    {
        const WeightFormat format = WeightFormat.F32;
        using var doc = JsonDocument.Parse(File.ReadAllText(EvalFile("heldout.json")));
        var r = doc.RootElement;
        double expected = r.GetProperty("mean_cross_entropy").GetDouble();
        int expectedCount = r.GetProperty("num_scored_tokens").GetInt32();
        using var m = Open(format);
        var (loss, count) = HeldOutLoss(m);
        log.WriteLine($"{format}: engine held-out loss {loss:F6} nats/token over {count} tokens (ppl {Math.Exp(loss):F3}); recorded {expected:F6}");
        Assert.Equal(expectedCount, count);
        Assert.True(Math.Abs(loss - expected) <= 0.01 * expected, $"engine loss {loss} vs recorded {expected}");
    }

    internal static Transformer OpenDemo(WeightFormat format) => Open(format);

    /// <summary>Mean cross-entropy (nats/token) of the model over eval/heldout.json's sequences (WordNet synsets the
    /// model was never trained on), each run alone from position 0, and the number of scored tokens.</summary>
    internal static (double Loss, int Count) HeldOutLoss(Transformer m)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(EvalFile("heldout.json")));
        var seqs = doc.RootElement.GetProperty("sequences").EnumerateArray().Select(Ints).ToArray();
        int vocab = m.Config.VocabSize;
        var s = m.CreateState(m.MaxContext, 1, allPositionLogits: true);
        double total = 0;
        int count = 0;
        foreach (var seq in seqs)
        {
            // positions 0..n-2 predict ids 1..n-1; each sequence alone, from position 0
            s.Clear();
            s.Add(m.CreateCache(), seq.AsSpan(0, seq.Length - 1));
            m.Forward(s, LogitsMode.AllPositions);
            for (int t = 0; t < seq.Length - 1; t++)
            {
                var logits = s.Logits(t);
                double max = double.NegativeInfinity;
                for (int v = 0; v < vocab; v++) max = Math.Max(max, logits[v]);
                double sum = 0;
                for (int v = 0; v < vocab; v++) sum += Math.Exp(logits[v] - max);
                total += max + Math.Log(sum) - logits[seq[t + 1]];
                count++;
            }
        }
        return (total / count, count);
    }
}
