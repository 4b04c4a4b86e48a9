using Loom.Inference.Engine;
using Loom.Inference.Sampling;
using Loom.Inference.Tests.Model;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Inference.Tests.Engine;

public sealed class EngineTests
{
    /// <summary>The serving engine over a golden model, prefilling in chunks of four.</summary>
    private static ServingEngine Engine(string name = "llama3_scaled_bf16", params int[] eos) =>
        new(GoldenLogitsTests.Open(name), new FakeTokenizer(320, eos),
            new InferenceOptions { PrefillChunk = 4, TokenBudget = 16, MaxRunningSequences = 4, PoolBytes = 1 << 20 }, name);

    private static async Task<List<GenerationEvent>> Run(IInferenceEngine e, GenerationRequest r, CancellationToken ct = default)
    {
        var list = new List<GenerationEvent>();
        await foreach (var ev in e.GenerateAsync(r, ct)) list.Add(ev);
        return list;
    }

    [Fact]
    public async Task GreedyGenerationFollowsTheOracle()
    {
        var g = Golden.Load("llama3_scaled_bf16");
        using var e = Engine();
        // chunked prefill (chunk 4 < prompt 9) then cached decode must give the oracle's greedy tokens
        var events = await Run(e, new GenerationRequest
        {
            PromptTokenIds = g.Prompts[0],
            Sampling = new SamplingParams { Temperature = 0, MaxTokens = g.DecodeTokens.Length },
        });
        var tokens = events.Where(x => x.TokenId is not null).Select(x => x.TokenId!.Value).ToArray();
        Assert.Equal(g.DecodeTokens, tokens);
        var last = events[^1];
        Assert.True(last.IsFinal);
        Assert.Equal(FinishReason.Length, last.FinishReason);
        Assert.Equal(new TokenUsage(g.Prompts[0].Length, g.DecodeTokens.Length), last.Usage);
        Assert.Equal(string.Concat(tokens.Select(FakeTokenizer.Piece)), string.Concat(events.Select(x => x.Text)));
    }

    [Fact]
    public async Task SeededSamplingIsReproducible()
    {
        using var e = Engine("qwen2_bias");
        var r = new GenerationRequest { PromptTokenIds = [317, 5, 6, 7], Sampling = new SamplingParams { Seed = 42, MaxTokens = 12, TopP = 0.9f } };
        var a = (await Run(e, r)).Select(x => x.TokenId).ToArray();
        var b = (await Run(e, r)).Select(x => x.TokenId).ToArray();
        var c = (await Run(e, r with { Sampling = r.Sampling with { Seed = 43 } })).Select(x => x.TokenId).ToArray();
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
        Assert.Equal(13, a.Length);
    }

    [Fact]
    public async Task StopTokenAndEosEndWithStop()
    {
        var g = Golden.Load("llama3_scaled_bf16");
        using var e = Engine();
        var r = new GenerationRequest { PromptTokenIds = g.Prompts[0], Sampling = new SamplingParams { Temperature = 0, MaxTokens = 10, StopTokenIds = [g.DecodeTokens[2]] } };
        var events = await Run(e, r);
        Assert.Equal(g.DecodeTokens[..2], events.Where(x => x.TokenId != null).Select(x => x.TokenId!.Value));
        Assert.Equal(FinishReason.Stop, events[^1].FinishReason);
        Assert.Equal(3, events[^1].Usage!.CompletionTokens);

        using var withEos = Engine("llama3_scaled_bf16", g.DecodeTokens[1]);
        var ev2 = await Run(withEos, r with { Sampling = r.Sampling with { StopTokenIds = [] } });
        Assert.Single(ev2, x => x.TokenId != null);
        Assert.Equal(FinishReason.Stop, ev2[^1].FinishReason);
        var ignored = await Run(withEos, r with { Sampling = r.Sampling with { StopTokenIds = [], IgnoreEos = true, MaxTokens = 4 } });
        Assert.Equal(FinishReason.Length, ignored[^1].FinishReason);
    }

    [Fact]
    public async Task StopStringTruncatesText()
    {
        var g = Golden.Load("llama3_scaled_bf16");
        using var e = Engine();
        string stop = FakeTokenizer.Piece(g.DecodeTokens[2]) + FakeTokenizer.Piece(g.DecodeTokens[3]);
        var events = await Run(e, new GenerationRequest { PromptTokenIds = g.Prompts[0], Sampling = new SamplingParams { Temperature = 0, MaxTokens = 10, StopStrings = [stop] } });
        string expected = string.Concat(g.DecodeTokens.Select(FakeTokenizer.Piece));
        expected = expected[..expected.IndexOf(stop, StringComparison.Ordinal)];
        Assert.Equal(expected, string.Concat(events.Select(x => x.Text)));
        Assert.Equal(FinishReason.Stop, events[^1].FinishReason);
    }

    [Fact]
    public async Task LogprobsComeWithEachToken()
    {
        using var e = Engine();
        var events = await Run(e, new GenerationRequest { PromptTokenIds = [317, 1, 2], Sampling = new SamplingParams { Temperature = 0, MaxTokens = 3, Logprobs = 2 } });
        foreach (var ev in events.Where(x => x.TokenId != null))
        {
            Assert.NotNull(ev.Logprobs);
            Assert.Equal(2, ev.Logprobs!.Top.Count);
            Assert.Equal(ev.TokenId, ev.Logprobs.Top[0].TokenId);   // greedy: the chosen token is the most likely
            Assert.True(ev.Logprobs.Logprob <= 0);
            Assert.NotNull(ev.Logprobs.Top[0].Text);
        }
    }

    [Fact]
    public async Task BadRequestsAndCancellation()
    {
        using var e = Engine();
        await Assert.ThrowsAsync<ArgumentException>(() => Run(e, new GenerationRequest { PromptTokenIds = [999] }));
        await Assert.ThrowsAsync<ArgumentException>(() => Run(e, new GenerationRequest()));
        using var cts = new CancellationTokenSource();
        var seen = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in e.GenerateAsync(new GenerationRequest { PromptTokenIds = [317], Sampling = new SamplingParams { MaxTokens = 50, IgnoreEos = true } }, cts.Token))
                if (++seen == 2) cts.Cancel();
        });
        // the engine is free again afterwards
        Assert.NotEmpty(await Run(e, new GenerationRequest { PromptTokenIds = [317], Sampling = new SamplingParams { MaxTokens = 2 } }));
    }

    [Fact]
    public async Task ContextLimitEndsWithLength()
    {
        using var e = Engine();   // golden models are opened with a 64-token context
        var events = await Run(e, new GenerationRequest { PromptTokenIds = Enumerable.Repeat(5, 60).ToArray(), Sampling = new SamplingParams { MaxTokens = 100, IgnoreEos = true } });
        Assert.Equal(FinishReason.Length, events[^1].FinishReason);
        Assert.Equal(4, events[^1].Usage!.CompletionTokens);
    }

    [Fact]
    public async Task DependencyInjectionLoadsTheConfiguredModelOrAStandIn()
    {
        var empty = new ServiceCollection().AddInference(new ConfigurationBuilder().Build()).BuildServiceProvider();
        Assert.IsType<UnconfiguredInferenceEngine>(empty.GetRequiredService<IInferenceEngine>());

        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Inference:ModelDirectory"] = Golden.PathOf("llama3_scaled_bf16"),
            ["Inference:MaxContext"] = "128",
        }).Build();
        using var sp = new ServiceCollection().AddInference(config).BuildServiceProvider();
        var engine = sp.GetRequiredService<IInferenceEngine>();
        Assert.Same(engine, sp.GetRequiredService<IInferenceEngine>());
        Assert.Equal(128, engine.Model.MaxContext);
        Assert.Equal([318, 319], engine.Model.Config.EosTokenIds);   // from generation_config.json
        var events = await Run(engine, new GenerationRequest { PromptTokenIds = [317, 40, 41], Sampling = new SamplingParams { Seed = 1, MaxTokens = 5, IgnoreEos = true } });
        Assert.Equal(5, events[^1].Usage!.CompletionTokens);
    }

    [Fact]
    public async Task TextPromptsGoThroughTheModelsTokenizer()
    {
        using var e = ServingEngine.Load(new InferenceOptions { ModelDirectory = Golden.PathOf("llama_gqa_tied"), MaxContext = 64, PoolBytes = 1 << 20 });
        Assert.True(e.Model.HasTokenizer);
        var events = await Run(e, new GenerationRequest { Prompt = "the quick brown fox", Sampling = new SamplingParams { Seed = 3, MaxTokens = 8, IgnoreEos = true } });
        Assert.True(events[^1].Usage!.PromptTokens > 1);
        Assert.Equal(8, events[^1].Usage!.CompletionTokens);
        // the streamed pieces add up to the tokenizer's decode of the generated ids
        var ids = events.Where(x => x.TokenId != null).Select(x => x.TokenId!.Value).ToArray();
        var tokenizer = Loom.Inference.Tokenization.TokenizerLoader.Load(Golden.PathOf("llama_gqa_tied"));
        Assert.Equal(tokenizer.Decode(ids), string.Concat(events.Select(x => x.Text)));
    }
}
