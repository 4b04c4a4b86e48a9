using Loom.Inference.Engine;
using Loom.Inference.Formats;
using Loom.Inference.Sampling;
using static Loom.Inference.Tests.Serving.ServingHarness;

namespace Loom.Inference.Tests.Serving;

/// <summary>Bad adapters and bad requests get clear errors, leave nothing half-registered, and the engine keeps
/// serving everyone else.</summary>
public sealed class ServingBadInputTests : IDisposable
{
    private readonly ServingHarness _h = new();

    public void Dispose() => _h.Dispose();

    private static GenerationRequest Greedy(string? adapter, params int[] prompt) =>
        new() { PromptTokenIds = prompt, AdapterId = adapter, Sampling = new SamplingParams { Temperature = 0, MaxTokens = 4, IgnoreEos = true } };

    [Fact]
    public async Task BadAdaptersAreRefusedAtRegistrationAndNothingIsHalfRegistered()
    {
        var e = _h.Engine(); // MaxLoraRank 16
        string good = _h.Adapter(4, [LoraTarget.QProj, LoraTarget.VProj], 1);
        var corrupt = _h.Copy(good);
        var bytes = File.ReadAllBytes(corrupt.Weights);
        File.WriteAllBytes(corrupt.Weights, bytes[..(bytes.Length - 50)]);
        string otherBase = _h.Adapter(4, [.. LoraTargets.All], 2, model: "llama3_scaled_bf16"); // intermediate 128, not 160
        string tooBig = _h.Adapter(32, [LoraTarget.QProj], 3);
        string missing = Path.Combine(Path.GetTempPath(), "loom-no-such-adapter-" + Guid.NewGuid().ToString("N"));

        Assert.Contains("out of range", Assert.Throws<AdapterFormatException>(() => e.RegisterAdapter("corrupt", corrupt.Path)).Message);
        Assert.Contains("does not fit the base model", Assert.Throws<AdapterFormatException>(() => e.RegisterAdapter("other", otherBase)).Message);
        Assert.Contains("exceeds the configured maximum of 16", Assert.Throws<AdapterFormatException>(() => e.RegisterAdapter("big", tooBig)).Message);
        Assert.Throws<AdapterFormatException>(() => e.RegisterAdapter("missing", missing));
        foreach (var id in new[] { "corrupt", "other", "big", "missing" })
        {
            Assert.False(e.IsAdapterRegistered(id));
            var ex = await Assert.ThrowsAsync<ArgumentException>(() => Run(e, Greedy(id, 317, 1)));
            Assert.Contains($"'{id}'", ex.Message);
        }
        var m = e.GetMetrics();
        Assert.Equal((0, 0, 0), (m.Adapters.Registered, m.Adapters.InPool, m.Pool.AdapterPages));

        // the good one registers; again with the same folder is a no-op; another folder under its id is refused
        e.RegisterAdapter("good", good);
        e.RegisterAdapter("good", good + Path.DirectorySeparatorChar);
        Assert.Throws<InvalidOperationException>(() => e.RegisterAdapter("good", tooBig));
        Assert.Equal(1, e.GetMetrics().Adapters.Registered);
        var both = await Task.WhenAll(Run(e, Greedy("good", 317, 1, 2)), Run(e, Greedy(null, 317, 1, 2))).WaitAsync(Limit);
        Assert.All(both, r => Assert.Equal(4, Tokens(r).Length));

        e.UnregisterAdapter("good");
        Assert.False(e.IsAdapterRegistered("good"));
        await Assert.ThrowsAsync<ArgumentException>(() => Run(e, Greedy("good", 317, 1)));
        e.UnregisterAdapter("never-registered");
        await Idle(e);
        Assert.Equal(0, e.GetMetrics().Pool.AdapterPages);
        Assert.Null(e.Pool.Audit());
    }

    /// <summary>Files that go bad after registration (no host-cache copy, so the engine rereads them when a batch
    /// needs the adapter): the requests naming it fail with the format error, the others finish.</summary>
    [Fact]
    public async Task AnAdapterThatBreaksOnDiskFailsItsRequestsOnly()
    {
        var e = _h.Engine(o => { o.HostAdapterCacheBytes = 0; return o; });
        var broken = _h.Copy(_h.Adapter(4, [LoraTarget.QProj], 4));
        string fine = _h.Adapter(4, [LoraTarget.VProj], 5);
        e.RegisterAdapter("broken", broken.Path);
        e.RegisterAdapter("fine", fine);
        File.WriteAllBytes(broken.Weights, [1, 2, 3]);
        var bad = Run(e, Greedy("broken", 317, 9));
        var others = new[] { Run(e, Greedy("fine", 317, 9)), Run(e, Greedy(null, 317, 9)) };
        var ex = await Assert.ThrowsAsync<AdapterFormatException>(() => bad.WaitAsync(Limit));
        Assert.Contains(broken.Weights, ex.Message);
        foreach (var o in others) Assert.Equal(4, Tokens(await o.WaitAsync(Limit)).Length);
        await Idle(e);
        Assert.Equal(1, e.GetMetrics().Requests.Failed);
        Assert.Null(e.Pool.Audit());
        Assert.Equal(0, e.Pool.Usage.KvPages);
    }

    [Fact]
    public async Task BadRequestsThrowBeforeAnyToken()
    {
        var e = _h.Engine();
        await Assert.ThrowsAsync<ArgumentException>(() => Run(e, new GenerationRequest { PromptTokenIds = [999] }));
        await Assert.ThrowsAsync<ArgumentException>(() => Run(e, new GenerationRequest()));
        await Assert.ThrowsAsync<ArgumentException>(() => Run(e, new GenerationRequest { PromptTokenIds = [1], Sampling = new SamplingParams { TopP = 0 } }));
        await Assert.ThrowsAsync<ArgumentException>(() => Run(e, new GenerationRequest { PromptTokenIds = Enumerable.Repeat(1, 64).ToArray() }));
        Assert.Equal(3, Tokens(await Run(e, Greedy(null, 317) with { Sampling = new SamplingParams { MaxTokens = 3, IgnoreEos = true } }).WaitAsync(Limit)).Length);
        Assert.Throws<ArgumentException>(() => new ServingEngine(Model.GoldenLogitsTests.Open(Base), null, new InferenceOptions { TokenBudget = 0 }));
    }

    [Fact]
    public void AModelWhoseKvWidthExceedsItsHiddenSizeIsRefusedAtLoadNotAtEveryRequest()
    {
        var config = new Loom.Inference.Model.ModelConfig
        {
            ModelType = "llama", HiddenSize = 32, IntermediateSize = 64, NumLayers = 1, NumHeads = 2, NumKvHeads = 2, HeadDim = 32, VocabSize = 64,
        };
        using var model = new Loom.Inference.Model.Transformer(Loom.Inference.Model.ModelWeights.CreateRandom(config, Loom.Inference.Kernels.WeightType.F32, 1), maxContext: 64);
        var ex = Assert.Throws<NotSupportedException>(() => new ServingEngine(model, null, new InferenceOptions { MaxContext = 64, PoolBytes = 1 << 20 }));
        Assert.Contains("KV width", ex.Message);
        Assert.Contains("64", ex.Message);
    }
}
