using Loom.Inference.Engine;
using Loom.Inference.Sampling;
using Loom.Inference.Tests.Serving;
using Loom.Inference.Training;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Training;

/// <summary>Training co-served with inference in the engine loop: the adapter is bitwise the same whatever requests ran
/// beside it, the requests get the same tokens as without training, and training is charged to its tenant.</summary>
public sealed class CoServingTests(ITestOutputHelper log) : IDisposable
{
    private readonly TrainingHarness _h = new();
    public void Dispose() => _h.Dispose();

    [Fact]
    public async Task TheAdapterIsBitwiseTheSameWhateverInferenceRunsBesideIt()
    {
        var g = TrainingGolden.Load("llama_gqa_tied_adamw");
        var engine = _h.Engine(g.Model);
        var request = _h.Plain(g, epochs: 8) with { TenantId = "trainer" };
        var alone = await TrainingHarness.Finish(engine.SubmitTraining(request));
        var solo = new List<int[]>();
        for (int i = 0; i < 24; i++) solo.Add(ServingHarness.Tokens(await ServingHarness.Run(engine, TrainingHarness.Greedy(i))));

        // the same run again with 24 requests arriving while it trains (four at a time)
        var run = engine.SubmitTraining(request with { OutputFolder = _h.Folder() });
        var outputs = new int[24][];
        for (int wave = 0; wave < 6; wave++)
        {
            var batch = Enumerable.Range(wave * 4, 4).Select(async i => outputs[i] = ServingHarness.Tokens(await ServingHarness.Run(engine, TrainingHarness.Greedy(i)))).ToArray();
            await Task.WhenAll(batch);
        }
        var beside = await TrainingHarness.Finish(run);
        Assert.Equal(TrainingHarness.AdapterBytes(alone), TrainingHarness.AdapterBytes(beside));
        for (int i = 0; i < 24; i++) Assert.Equal(solo[i], outputs[i]);
        var (_, trained, slices, time) = engine.TrainingCounters;
        log.WriteLine($"{slices} training slices, {trained} trained tokens, {time.TotalMilliseconds:F0} ms of training");
        var tenant = engine.GetMetrics().Tenants.Single(t => t.TenantId == "trainer");
        Assert.True(tenant.Counter >= 2 * alone.TrainedTokens * 3, $"trainer counter {tenant.Counter}");
    }

    [Fact]
    public async Task TrainingGivesWayToRequestsWhileTheyRun()
    {
        var g = TrainingGolden.Load("llama_gqa_tied_adamw");
        var engine = _h.Engine(g.Model, o => { o.TrainingShareWhileServing = 0; return o; });
        var run = engine.SubmitTraining(_h.Plain(g, epochs: 200));
        await Until(() => run.Latest.Step >= 1);
        // with no share while serving, a long request runs to the end without a training slice in between; idle slices
        // are one unit each, so the run keeps going around the request
        long before = engine.ServingSlices;
        var events = await ServingHarness.Run(engine, TrainingHarness.Greedy(1) with { Sampling = new SamplingParams { Temperature = 0, MaxTokens = 40, IgnoreEos = true } });
        Assert.Equal(40, ServingHarness.Tokens(events).Length);
        Assert.Equal(0, engine.ServingSlices - before);
        var (_, _, idleAfter, _) = engine.TrainingCounters;
        await Until(() => engine.TrainingCounters.Slices > idleAfter);
        run.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run.Completion.WaitAsync(TrainingHarness.Limit));
    }

    [Fact]
    public async Task TrainingTakesItsShareBetweenDecodeStepsAndIdleSlicesAreOneUnit()
    {
        var g = TrainingGolden.Load("llama_gqa_tied_adamw");
        var engine = _h.Engine(g.Model, o => { o.TrainingShareWhileServing = 1; o.TrainingBurstMs = 0; return o; });
        // alone: a slice is one unit, so a request that arrives waits for one layer of one row at most
        var result = await TrainingHarness.Finish(engine.SubmitTraining(_h.Plain(g, epochs: 2)));
        int layers = engine.Model.Config.NumLayers;
        var (_, _, slices, _) = engine.TrainingCounters;
        Assert.True(slices >= result.Steps * (2L * layers + 1), $"{slices} slices for {result.Steps} steps of {layers} layers");

        // serving: the run keeps its share in the iterations between decode steps
        var run = engine.SubmitTraining(_h.Plain(g, epochs: 200));
        await Until(() => run.Latest.Step >= 1);
        long before = engine.ServingSlices;
        var events = await ServingHarness.Run(engine, TrainingHarness.Greedy(2) with { Sampling = new SamplingParams { Temperature = 0, MaxTokens = 40, IgnoreEos = true } });
        Assert.Equal(40, ServingHarness.Tokens(events).Length);
        Assert.True(engine.ServingSlices - before > 0, "no training slice ran while the request was served");
        run.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run.Completion.WaitAsync(TrainingHarness.Limit));
    }

    private static async Task Until(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TrainingHarness.Limit;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out");
            await Task.Delay(1);
        }
    }
}

/// <summary>Training activations counted in the unified pool: pages held while a run trains, given back when requests
/// need the memory (the run then recomputes, bitwise the same), none left after.</summary>
public sealed class TrainingMemoryTests : IDisposable
{
    private readonly TrainingHarness _h = new();
    public void Dispose() => _h.Dispose();

    [Fact]
    public async Task ActivationsAreCountedInThePoolAndGivenBackToRequestsThatNeedThem()
    {
        var g = TrainingGolden.Load("llama_gqa_tied_adamw");
        var roomy = _h.Engine(g.Model, o => { o.PoolBytes = 8 << 20; return o; });
        var request = _h.Plain(g, epochs: 60);
        var reference = await TrainingHarness.Finish(roomy.SubmitTraining(request));

        var tight = _h.Engine(g.Model, o => { o.PoolBytes = 384 << 10; o.MaxRunningSequences = 8; return o; });
        var run = tight.SubmitTraining(request with { OutputFolder = _h.Folder() });
        await Until(() => run.Latest.Step >= 1);
        var m = tight.GetMetrics();
        Assert.True(m.Pool.TrainingPages > 0, "the run's activations are not counted in the pool");
        Assert.Equal(m.Pool.Pages, m.Pool.FreePages + m.Pool.KvPages + m.Pool.AdapterPages + m.Pool.TrainingPages);
        // eight long requests want more pages than the run left free
        var requests = Enumerable.Range(0, 8).Select(i => ServingHarness.Run(tight, new GenerationRequest
        {
            PromptTokenIds = Enumerable.Range(0, 20).Select(t => (t * 13 + i) % 300).ToArray(),
            Sampling = new SamplingParams { Temperature = 0, MaxTokens = 40, IgnoreEos = true },
        })).ToArray();
        var outputs = await Task.WhenAll(requests).WaitAsync(TrainingHarness.Limit);
        Assert.All(outputs, o => Assert.Equal(40, ServingHarness.Tokens(o).Length));
        Assert.Equal(1, tight.TrainingReclaims);
        var result = await TrainingHarness.Finish(run);
        Assert.Equal(TrainingHarness.AdapterBytes(reference), TrainingHarness.AdapterBytes(result));
        await Until(() => tight.GetMetrics().Pool.TrainingPages == 0);
        Assert.Null(tight.Pool.Audit());
    }

    private static async Task Until(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TrainingHarness.Limit;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out");
            await Task.Delay(1);
        }
    }
}
