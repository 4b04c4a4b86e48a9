using Loom.Inference.Engine;
using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Loom.Inference.Tests.Engine;
using Loom.Inference.Tests.Lora;
using Loom.Inference.Tests.Model;

namespace Loom.Inference.Tests.Serving;

/// <summary>Engines over the golden models, random adapters, and helpers to run requests to completion.</summary>
internal sealed class ServingHarness : IDisposable
{
    private readonly List<TempAdapter> _temps = [];
    private readonly List<ServingEngine> _engines = [];
    public static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    /// <summary>llama_gqa_tied: hidden 64 (256-byte pages), KV 2 pages per token, 2 layers.</summary>
    public const string Base = "llama_gqa_tied";

    public ServingEngine Engine(Func<InferenceOptions, InferenceOptions>? edit = null, string name = Base, params int[] eos) =>
        Engine(null, edit, name, eos);

    /// <param name="level">The CPU kernels' SIMD level; null: the best this machine has.</param>
    public ServingEngine Engine(SimdLevel? level, Func<InferenceOptions, InferenceOptions>? edit, string name = Base, params int[] eos)
    {
        var o = new InferenceOptions { MaxContext = 64, PrefillChunk = 4, TokenBudget = 16, MaxRunningSequences = 8, PoolBytes = 1 << 20, MaxLoraRank = 16 };
        var e = new ServingEngine(GoldenLogitsTests.Open(name, level: level), new FakeTokenizer(320, eos), edit?.Invoke(o) ?? o, name);
        _engines.Add(e);
        return e;
    }

    public string Adapter(int rank, LoraTarget[] targets, int seed, string model = Base, bool bf16Values = false)
    {
        var t = TempAdapter.Random(ModelConfig.Load(Golden.PathOf(model)), rank, targets, seed, alpha: 0.05 * rank, bf16Values: bf16Values);
        _temps.Add(t);
        return t.Path;
    }

    public TempAdapter Copy(string folder)
    {
        var t = TempAdapter.Random(ModelConfig.Load(Golden.PathOf(Base)), 1, [LoraTarget.QProj], 0);
        _temps.Add(t);
        foreach (var f in Directory.GetFiles(folder)) File.Copy(f, Path.Combine(t.Path, Path.GetFileName(f)), overwrite: true);
        return t;
    }

    public static async Task<List<GenerationEvent>> Run(IInferenceEngine e, GenerationRequest r, CancellationToken ct = default)
    {
        var list = new List<GenerationEvent>();
        await foreach (var ev in e.GenerateAsync(r, ct).WithCancellation(ct)) list.Add(ev);
        return list;
    }

    public static int[] Tokens(List<GenerationEvent> events) => events.Where(x => x.TokenId is not null).Select(x => x.TokenId!.Value).ToArray();

    /// <summary>Polls until <paramref name="condition"/> holds; fails with <paramref name="what"/> after <see cref="Limit"/>.</summary>
    public static async Task Until(Func<bool> condition, Func<string> what)
    {
        var deadline = DateTime.UtcNow + Limit;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, what());
            await Task.Delay(1);
        }
    }

    /// <summary>Awaits <paramref name="work"/> while <paramref name="e"/> keeps running iterations: fails with the engine's
    /// metrics when no iteration ran for <paramref name="stall"/> (a hang), not when a loaded machine makes the work slow;
    /// and after 15 minutes in all (a loop that runs iterations without ever finishing).</summary>
    public static async Task<T> WhileProgressing<T>(ServingEngine e, Task<T> work, TimeSpan stall)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(15);
        long seen = -1;
        while (await Task.WhenAny(work, Task.Delay(stall)) != work)
        {
            long now = e.GetMetrics().Loop.Iterations;
            if (now == seen) throw new TimeoutException($"no engine iteration for {stall.TotalSeconds:0} s: {e.GetMetrics()}");
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"still running after 15 minutes: {e.GetMetrics()}");
            seen = now;
        }
        return await work;
    }

    /// <summary>Waits until the engine has no running or waiting sequence.</summary>
    public static async Task Idle(ServingEngine e)
    {
        var deadline = DateTime.UtcNow + Limit;
        while (e.GetMetrics() is { Loop.Running: > 0 } or { Loop.Waiting: > 0 } || e.Pool.Usage.KvPages > 0)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"engine still busy: {e.GetMetrics()}");
            await Task.Delay(5);
        }
    }

    public void Dispose()
    {
        foreach (var e in _engines) e.Dispose();
        foreach (var t in _temps) t.Dispose();
    }
}
