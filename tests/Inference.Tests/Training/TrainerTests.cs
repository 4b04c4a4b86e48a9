using Loom.Inference.Formats;
using Loom.Inference.Memory;
using Loom.Inference.Model;
using Loom.Inference.Tests.Model;
using Loom.Inference.Training;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Training;

/// <summary>Training runs through the engine: AdamW steps against autograd, the saved adapter's logits on the serving
/// path, determinism, snapshots, accumulation, control, bad input.</summary>
public sealed class TrainerTests(ITestOutputHelper log) : IDisposable
{
    private readonly TrainingHarness _h = new();
    public void Dispose() => _h.Dispose();

    public static readonly TheoryData<string> AdamCases = new() { "llama_gqa_tied_adamw", "qwen2_bias_adamw_cosine" };

    [Theory]
    [MemberData(nameof(AdamCases))]
    public async Task ThreeAdamWStepsWithWarmupAndClippingMatchAutograd(string name)
    {
        var g = TrainingGolden.Load(name);
        var engine = _h.Engine(g.Model);
        var run = engine.SubmitTraining(new TrainingRequest
        {
            Examples = g.Examples.Take(g.Steps * g.PerStep).ToArray(),
            Hyperparameters = TrainingHarness.Hyperparameters(g),
            InitialAdapterFolder = g.Directory,
            OutputFolder = _h.Folder(),
        });
        var result = await TrainingHarness.Finish(run);
        Assert.Equal(g.Steps, result.Steps);
        double lossRel = Math.Abs(result.FinalTrainLoss - g.Losses[^1]) / g.Losses[^1];
        log.WriteLine($"{name}: last step loss {result.FinalTrainLoss:R} vs {g.Losses[^1]:R} (rel {lossRel:E2})");
        Assert.True(lossRel < 1e-5);
        var adapter = PeftAdapter.Load(result.AdapterFolder, engine.Model.Config);
        var start = PeftAdapter.Load(g.Directory, engine.Model.Config);
        double worst = 0;
        foreach (var m in adapter.Modules)
            foreach (bool isA in new[] { true, false })
            {
                string tensor = LoraTargets.TensorName(m.Layer, m.Target, isA);
                var expected = g.Tensor($"step{g.Steps}.{tensor}");
                var actual = isA ? m.A : m.B;
                worst = Math.Max(worst, Compare.RelativeError(actual, expected).Rel);
                Compare.Close(null, $"{name} {tensor} after {g.Steps} steps", actual, expected, 1e-4);
                // the steps moved the weights well beyond the tolerance
                var before = isA ? start.Find(m.Layer, m.Target)!.A : start.Find(m.Layer, m.Target)!.B;
                Assert.True(Compare.RelativeError(before, expected).Rel > 1e-3, $"{tensor} barely moved");
            }
        log.WriteLine($"{name}: {adapter.Modules.Count * 2} tensors after {g.Steps} AdamW steps, worst relative error {worst:E2}");
    }

    [Fact]
    public async Task TheSavedAdapterGivesTheOracleLogitsOnTheServingPath()
    {
        var g = TrainingGolden.Load("llama_gqa_tied_adamw");
        var engine = _h.Engine(g.Model);
        var result = await TrainingHarness.Finish(engine.SubmitTraining(new TrainingRequest
        {
            Examples = g.Examples, Hyperparameters = TrainingHarness.Hyperparameters(g), InitialAdapterFolder = g.Directory, OutputFolder = _h.Folder(),
        }));
        // the folder is a PEFT adapter the engine registers at once
        engine.RegisterAdapter("trained", result.AdapterFolder);
        Assert.True(engine.IsAdapterRegistered("trained"));
        using var model = GoldenLogitsTests.Open(g.Model);
        var adapter = PeftAdapter.Load(result.AdapterFolder, model.Config);
        using var pool = new PagePool(2048L * model.Config.HiddenSize * 4, model.Config.HiddenSize);
        var resident = AdapterResidency.TryCreate(pool, "trained", 1, adapter)!;
        for (int i = 0; i < g.Examples.Length; i++)
        {
            var tokens = g.Examples[i].TokenIds;
            var s = model.CreateState(tokens.Length, 1, allPositionLogits: true, maxLoraRank: adapter.Config.Rank);
            using var kv = PagedKvCache.For(pool, model.Config, i, 64);
            s.Add(kv, tokens, resident);
            model.Forward(s, LogitsMode.AllPositions);
            Compare.Close(log, $"example {i} logits with the trained adapter", s.LogitsBuffer.AsSpan(0, tokens.Length * model.Config.VocabSize), g.Tensor($"logits.{i}"), 1e-4);
        }
    }

    [Fact]
    public async Task SameSeedDataAndHyperparametersGiveBitwiseTheSameAdapter()
    {
        var g = TrainingGolden.Load("llama_gqa_tied_adamw");
        var engine = _h.Engine(g.Model);
        var a = await TrainingHarness.Finish(engine.SubmitTraining(_h.Plain(g)));
        var b = await TrainingHarness.Finish(engine.SubmitTraining(_h.Plain(g)));
        Assert.True(a.Steps > 3);
        Assert.Equal(TrainingHarness.AdapterBytes(a), TrainingHarness.AdapterBytes(b));
        Assert.Equal(a.FinalValidationLoss, b.FinalValidationLoss);
        var other = await TrainingHarness.Finish(engine.SubmitTraining(_h.Plain(g, seed: 8)));
        Assert.NotEqual(TrainingHarness.AdapterBytes(a), TrainingHarness.AdapterBytes(other));
        log.WriteLine($"{a.Steps} steps, {a.TrainedTokens} trained tokens, loss {a.FinalTrainLoss:F4}, validation {a.FinalValidationLoss:F4}");
    }

    [Fact]
    public async Task TrainingLowersTheLoss()
    {
        var g = TrainingGolden.Load("llama_gqa_tied_adamw");
        var engine = _h.Engine(g.Model);
        var request = _h.Plain(g, epochs: 30) with { Hyperparameters = _h.Plain(g).Hyperparameters with { Epochs = 30, LearningRate = 0.02 } };
        var run = engine.SubmitTraining(request);
        var first = new List<TrainingProgress>();
        var result = await TrainingHarness.Finish(run);
        var initial = await TrainingHarness.Finish(engine.SubmitTraining(request with { OutputFolder = _h.Folder(), Hyperparameters = request.Hyperparameters with { Epochs = 1, LearningRate = 1e-9 } }));
        log.WriteLine($"validation loss {initial.FinalValidationLoss:F3} → {result.FinalValidationLoss:F3} after {result.Steps} steps");
        Assert.True(result.FinalValidationLoss < 0.7 * initial.FinalValidationLoss);
    }

    [Fact]
    public async Task SnapshotRestoreAndContinueIsBitwiseEqualToTheUninterruptedRun()
    {
        var g = TrainingGolden.Load("qwen2_bias_adamw_cosine");
        var engine = _h.Engine(g.Model);
        var request = _h.Plain(g, epochs: 6);
        var whole = await TrainingHarness.Finish(engine.SubmitTraining(request));

        var run = engine.SubmitTraining(request with { OutputFolder = _h.Folder() });
        await Until(() => run.Latest.Step >= 3);
        run.Pause();
        var snap = await run.TakeSnapshotAsync().WaitAsync(TrainingHarness.Limit);
        run.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run.Completion.WaitAsync(TrainingHarness.Limit));
        Assert.InRange(snap.Step, 3, whole.Steps - 1);
        log.WriteLine($"snapshot at step {snap.Step} of {whole.Steps}: epoch {snap.Epoch}, cursor {snap.Cursor}, {snap.ToBytes().Length} bytes");

        var restored = TrainingSnapshot.FromBytes(snap.ToBytes());
        var resumed = await TrainingHarness.Finish(engine.SubmitTraining(request with { OutputFolder = _h.Folder(), ResumeFrom = restored }));
        Assert.Equal(whole.Steps, resumed.Steps);
        Assert.Equal(TrainingHarness.AdapterBytes(whole), TrainingHarness.AdapterBytes(resumed));
        Assert.Equal(whole.FinalValidationLoss, resumed.FinalValidationLoss);

        // and through a folder (PEFT adapter + training_state.bin)
        string folder = _h.Folder();
        snap.Save(folder);
        Assert.NotNull(PeftAdapter.Load(folder, engine.Model.Config));
        var again = await TrainingHarness.Finish(engine.SubmitTraining(request with { OutputFolder = _h.Folder(), ResumeFrom = TrainingSnapshot.Load(folder) }));
        Assert.Equal(TrainingHarness.AdapterBytes(whole), TrainingHarness.AdapterBytes(again));
    }

    [Fact]
    public async Task MicroBatchesAndAccumulationOfTheSameRowsGiveTheSameAdapter()
    {
        var g = TrainingGolden.Load("llama_gqa_tied_adamw");
        var engine = _h.Engine(g.Model);
        var request = _h.Plain(g);
        var accumulated = await TrainingHarness.Finish(engine.SubmitTraining(request with
        {
            Hyperparameters = request.Hyperparameters with { MicroBatchSize = 1, GradientAccumulation = 2 },
        }));
        var batched = await TrainingHarness.Finish(engine.SubmitTraining(request with
        {
            OutputFolder = _h.Folder(), Hyperparameters = request.Hyperparameters with { MicroBatchSize = 2, GradientAccumulation = 1 },
        }));
        Assert.Equal(accumulated.Steps, batched.Steps);
        Assert.Equal(TrainingHarness.AdapterBytes(accumulated), TrainingHarness.AdapterBytes(batched));
    }

    [Fact]
    public async Task PauseHoldsTheRunResumeFinishesItCancelEndsIt()
    {
        var g = TrainingGolden.Load("llama_gqa_tied_adamw");
        var engine = _h.Engine(g.Model);
        var run = engine.SubmitTraining(_h.Plain(g, epochs: 40));
        await Until(() => run.Latest.Step >= 1);
        run.Pause();
        await Until(() => run.State == TrainingRunState.Paused);
        int step = run.Latest.Step;
        await Task.Delay(200);
        Assert.Equal(step, run.Latest.Step);
        Assert.Equal(TrainingRunState.Paused, run.State);
        run.Resume();
        var result = await TrainingHarness.Finish(run);
        Assert.Equal(TrainingRunState.Completed, run.State);
        Assert.Equal(run.Latest.TotalSteps, result.Steps);
        Assert.True(run.Latest.EstimatedRemaining is not null && run.Latest.TokensPerSecond > 0);

        var cancelled = engine.SubmitTraining(_h.Plain(g, epochs: 40));
        await Until(() => cancelled.Latest.Step >= 1);
        cancelled.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled.Completion.WaitAsync(TrainingHarness.Limit));
        Assert.Equal(TrainingRunState.Cancelled, cancelled.State);
        Assert.True(cancelled.Latest.Step < cancelled.Latest.TotalSteps);
    }

    [Fact]
    public async Task ProgressStreamsEveryStepInOrderUntilTheEnd()
    {
        var g = TrainingGolden.Load("llama_gqa_tied_adamw");
        var engine = _h.Engine(g.Model);
        var request = _h.Plain(g, epochs: 4);
        var run = engine.SubmitTraining(request);
        run.Pause();
        var events = new List<TrainingProgress>();
        var reader = Task.Run(async () => { await foreach (var p in run.ReadProgressAsync()) events.Add(p); });
        await Task.Delay(50);
        run.Resume();
        await TrainingHarness.Finish(run);
        await reader.WaitAsync(TrainingHarness.Limit);
        var steps = events.Where(e => e.State == TrainingRunState.Running && e.Step > 0).Select(e => e.Step).ToArray();
        Assert.Equal(Enumerable.Range(1, run.Latest.TotalSteps), steps.Distinct());
        Assert.Equal(TrainingRunState.Completed, events[^1].State);
        Assert.All(events.Where(e => e.Step > 0), e => Assert.True(double.IsFinite(e.TrainLoss) && e.LearningRate > 0));
        Assert.Equal(4.0, events[^1].Epoch);
        Assert.NotNull(events[^1].ValidationLoss);
    }

    [Fact]
    public void BadRequestsAreRefusedWithTheProblemNamed()
    {
        var g = TrainingGolden.Load("llama_gqa_tied_adamw");
        var engine = _h.Engine(g.Model);
        var ok = _h.Plain(g);
        void Bad(TrainingRequest r, string words)
        {
            var e = Assert.Throws<ArgumentException>(() => engine.SubmitTraining(r));
            Assert.Contains(words, e.Message);
        }
        Bad(ok with { Examples = [] }, "at least one training example");
        Bad(ok with { Examples = [new TrainingExample([1, 400], [false, true])] }, "outside the vocabulary");
        Bad(ok with { Examples = [new TrainingExample([1, 2, 3], [true, false, false])] }, "no token is trained");
        Bad(ok with { Examples = [new TrainingExample([1, 2], [false])] }, "loss mask");
        Bad(ok with { Examples = [TrainingExample.AllTrained(Enumerable.Range(0, 40).ToArray())] }, "exceed the training context");
        Bad(ok with { Hyperparameters = ok.Hyperparameters with { Rank = 0 } }, "rank");
        Bad(ok with { Hyperparameters = ok.Hyperparameters with { LearningRate = double.NaN } }, "learning rate");
        Bad(ok with { Hyperparameters = ok.Hyperparameters with { TargetModules = [] } }, "target module");
        Bad(ok with { Hyperparameters = ok.Hyperparameters with { MaxSequenceLength = 100 } }, "context");
        Bad(ok with { InitialAdapterFolder = "/nonexistent/adapter" }, "initial adapter");
        var snap = new TrainingSnapshot
        {
            Fingerprint = "other", Step = 1, Epoch = 0, Cursor = 2, RngState = [1, 2, 3, 4], TrainedTokens = 1, LastTrainLoss = 1, Rank = 4, Alpha = 8, Modules = [],
        };
        Bad(ok with { ResumeFrom = snap }, "other data or hyperparameters");
        Bad(ok with { ResumeFrom = snap, InitialAdapterFolder = g.Directory }, "not both");
        Assert.Throws<InvalidDataException>(() => TrainingSnapshot.FromBytes([1, 2, 3]));
        Assert.Throws<InvalidDataException>(() => TrainingSnapshot.FromBytes(snap.ToBytes()[..^1]));
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
