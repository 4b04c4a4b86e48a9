using System.Text.Json;
using Loom.Inference.Engine;
using Loom.Inference.Formats;
using Loom.Inference.Model;
using Loom.Inference.Tests.Model;
using Loom.Inference.Training;

namespace Loom.Inference.Tests.Training;

/// <summary>Engines over the golden models for training tests, temporary output folders, and helpers.</summary>
internal sealed class TrainingHarness : IDisposable
{
    private readonly List<ServingEngine> _engines = [];
    private readonly List<string> _dirs = [];
    // Generous: Debug builds on a loaded 2-core machine train the 60-epoch runs for over a minute.
    public static readonly TimeSpan Limit = TimeSpan.FromMinutes(4);

    /// <summary>Request i of the co-serving tests: a short greedy prompt of one of three tenants, 12 tokens.</summary>
    public static GenerationRequest Greedy(int i) => new()
    {
        PromptTokenIds = Enumerable.Range(0, 5 + i % 7).Select(t => (t * 37 + i * 11) % 300).ToArray(),
        Sampling = new Loom.Inference.Sampling.SamplingParams { Temperature = 0, MaxTokens = 12, IgnoreEos = true },
        TenantId = $"t{i % 3}",
    };

    public ServingEngine Engine(string model, Func<InferenceOptions, InferenceOptions>? edit = null, WeightFormat format = WeightFormat.Auto)
    {
        var o = new InferenceOptions { MaxContext = 64, PrefillChunk = 4, TokenBudget = 16, MaxRunningSequences = 8, PoolBytes = 1 << 20, MaxLoraRank = 16 };
        var e = new ServingEngine(GoldenLogitsTests.Open(model, format), new Loom.Inference.Tests.Engine.FakeTokenizer(320), edit?.Invoke(o) ?? o, model);
        _engines.Add(e);
        return e;
    }

    public string Folder()
    {
        string d = Directory.CreateTempSubdirectory("loom-train-test-").FullName;
        _dirs.Add(d);
        return d;
    }

    /// <summary>The oracle case's hyperparameters (no shuffling: steps take the examples in order).</summary>
    public static TrainingHyperparameters Hyperparameters(TrainingGolden g)
    {
        var h = g.Hyperparameters!.Value;
        return new TrainingHyperparameters
        {
            Epochs = 1, MicroBatchSize = 1, GradientAccumulation = g.PerStep, Shuffle = false,
            LearningRate = h.GetProperty("learning_rate").GetDouble(), WarmupSteps = h.GetProperty("warmup_steps").GetInt32(),
            Schedule = Enum.Parse<LearningRateSchedule>(h.GetProperty("schedule").GetString()!, ignoreCase: true),
            WeightDecay = h.GetProperty("weight_decay").GetDouble(), Beta1 = h.GetProperty("beta1").GetDouble(),
            Beta2 = h.GetProperty("beta2").GetDouble(), Epsilon = h.GetProperty("eps").GetDouble(), MaxGradNorm = h.GetProperty("max_grad_norm").GetDouble(),
        };
    }

    /// <summary>A plain run on the golden examples: PEFT initialisation from the seed, shuffled, packed rows of 24.</summary>
    public TrainingRequest Plain(TrainingGolden g, int epochs = 3, ulong seed = 7) => new()
    {
        Examples = g.Examples,
        Validation = g.Examples.Take(2).ToArray(),
        OutputFolder = Folder(),
        Hyperparameters = new TrainingHyperparameters
        {
            Epochs = epochs, MicroBatchSize = 1, GradientAccumulation = 1, LearningRate = 0.01, WarmupSteps = 2, Schedule = LearningRateSchedule.Cosine,
            WeightDecay = 0.01, Rank = 4, Alpha = 8, TargetModules = LoraTargets.All, Seed = seed, Packing = true, MaxSequenceLength = 24, ValidationEvery = 2,
        },
    };

    public static async Task<TrainingResult> Finish(ITrainingRun run) => await run.Completion.WaitAsync(Limit);

    public static byte[] AdapterBytes(TrainingResult r) => File.ReadAllBytes(Path.Combine(r.AdapterFolder, PeftAdapter.WeightsFileName));

    public void Dispose()
    {
        foreach (var e in _engines) e.Dispose();
        foreach (var d in _dirs)
            try { Directory.Delete(d, true); }
            catch (IOException) { }
    }
}
