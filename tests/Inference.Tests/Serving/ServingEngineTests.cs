using Loom.Inference.Engine;
using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Sampling;
using Loom.Inference.Tests.Lora;
using static Loom.Inference.Tests.Serving.ServingHarness;

namespace Loom.Inference.Tests.Serving;

/// <summary>The continuous-batching engine: oracle tokens, batched == alone, adapters == merged weights, chunked
/// prefill under a token budget, preemption by recompute, eviction and reload, cancellation.</summary>
public sealed class ServingEngineTests : IDisposable
{
    private readonly ServingHarness _h = new();

    public void Dispose() => _h.Dispose();

    [Fact]
    public async Task GreedyGenerationFollowsTheOracleThroughChunkedPrefill()
    {
        var g = Golden.Load("llama3_scaled_bf16");
        var e = _h.Engine(name: "llama3_scaled_bf16");
        var events = await Run(e, new GenerationRequest
        {
            PromptTokenIds = g.Prompts[0],   // 9 tokens, prefill chunk 4
            Sampling = new SamplingParams { Temperature = 0, MaxTokens = g.DecodeTokens.Length },
        }).WaitAsync(Limit);
        Assert.Equal(g.DecodeTokens, Tokens(events));
        Assert.Equal(new TokenUsage(g.Prompts[0].Length, g.DecodeTokens.Length), events[^1].Usage);
        Assert.Equal(FinishReason.Length, events[^1].FinishReason);
    }

    /// <summary>Requests with seeds, mixed adapters (ranks 2, 8, 16) and the base model, all submitted at once: each
    /// one's tokens equal the same request run alone; the greedy ones equal greedy decoding on merged weights.</summary>
    [Fact]
    public async Task BatchedRequestsEqualEachRunAloneAndAdaptersEqualMergedWeights()
    {
        var e = _h.Engine();
        string[] folders =
        [
            _h.Adapter(2, [LoraTarget.QProj, LoraTarget.VProj], 1),
            _h.Adapter(8, [.. LoraTargets.All], 2),
            _h.Adapter(16, [LoraTarget.OProj, LoraTarget.DownProj, LoraTarget.GateProj], 3),
        ];
        for (int i = 0; i < folders.Length; i++) e.RegisterAdapter($"a{i}", folders[i]);
        var rng = new Random(5);
        var requests = Enumerable.Range(0, 10).Select(i => new GenerationRequest
        {
            PromptTokenIds = Enumerable.Range(0, 3 + rng.Next(10)).Select(_ => rng.Next(320)).ToArray(),
            AdapterId = i % 4 == 3 ? null : $"a{i % 3}",
            Sampling = i % 2 == 0
                ? new SamplingParams { Temperature = 0, MaxTokens = 6, IgnoreEos = true }
                : new SamplingParams { Seed = (ulong)i, TopP = 0.9f, MaxTokens = 6, IgnoreEos = true },
        }).ToArray();

        var batched = await Task.WhenAll(requests.Select(r => Run(e, r))).WaitAsync(Limit);
        Assert.True(e.GetMetrics().Loop.LastBatchSequences > 1 || e.GetMetrics().Loop.Iterations < 60);
        for (int i = 0; i < requests.Length; i++)
        {
            var alone = await Run(e, requests[i]).WaitAsync(Limit);
            Assert.Equal(Tokens(alone), Tokens(batched[i]));
            Assert.Equal(6, Tokens(batched[i]).Length);
        }

        // greedy requests against the merged reference (the adapter folded into a copy of the base weights)
        var adapters = folders.Select(f => PeftAdapter.Load(f, e.Model.Config)).ToArray();
        for (int i = 0; i < requests.Length; i += 2)
        {
            var r = requests[i];
            using var m = MergedReference.Open(Base, r.AdapterId is null ? null : adapters[r.AdapterId[1] - '0']);
            var s = m.CreateState(64, 1);
            var cache = m.CreateCache();
            var expected = new List<int>();
            s.Add(cache, r.PromptTokenIds!.ToArray());
            for (int step = 0; step < 6; step++)
            {
                m.Forward(s);
                int t = Ops.Argmax(s.Logits(0));
                expected.Add(t);
                s.Clear();
                s.Add(cache, [t]);
            }
            Assert.Equal(expected, Tokens(batched[i]));
        }
        await Idle(e);
        Assert.Null(e.Pool.Audit());
        Assert.Equal(0, e.Pool.Usage.KvPages);
    }

    [Fact]
    public async Task TheTokenBudgetBoundsEveryIterationAndDecodesKeepGoingDuringLongPrefills()
    {
        var e = _h.Engine(o => { o.TokenBudget = 6; o.PrefillChunk = 4; return o; });
        var decoding = Run(e, new GenerationRequest { PromptTokenIds = [317, 1], Sampling = new SamplingParams { Temperature = 0, MaxTokens = 30, IgnoreEos = true } });
        await Task.Delay(50);
        var longPrompt = Enumerable.Range(0, 40).Select(i => 10 + i).ToArray();
        var prefill = Run(e, new GenerationRequest { PromptTokenIds = longPrompt, Sampling = new SamplingParams { Temperature = 0, MaxTokens = 2 } });
        int maxTokens = 0;
        while (!decoding.IsCompleted || !prefill.IsCompleted)
        {
            maxTokens = Math.Max(maxTokens, e.GetMetrics().Loop.LastBatchTokens);
            await Task.Delay(1);
        }
        await Task.WhenAll(decoding, prefill).WaitAsync(Limit);
        Assert.InRange(maxTokens, 1, 6);
        var m = e.GetMetrics();
        // 40 prompt tokens in chunks of at most 4 (budget 6 less the running decode): at least 10 iterations
        Assert.True(m.Loop.Iterations >= 10 + 1, $"{m.Loop.Iterations} iterations");
        Assert.Equal(30, Tokens(await decoding).Length);
    }

    /// <summary>A pool too small for all requests at once: the newest is preempted and recomputed later, and every
    /// request still produces the tokens it produces alone.</summary>
    [Fact]
    public async Task PreemptionByRecomputeChangesNoOutput()
    {
        // 2 pages per token: 160 pages hold 80 positions; eight requests of up to 10 + 20 positions need 240
        var small = _h.Engine(o => { o.PoolBytes = 160 * 256; o.TokenBudget = 32; return o; });
        var big = _h.Engine();
        var rng = new Random(9);
        var requests = Enumerable.Range(0, 8).Select(i => new GenerationRequest
        {
            PromptTokenIds = Enumerable.Range(0, 4 + rng.Next(7)).Select(_ => rng.Next(320)).ToArray(),
            Sampling = new SamplingParams { Seed = (ulong)(100 + i), MaxTokens = 20, IgnoreEos = true },
        }).ToArray();
        var results = await Task.WhenAll(requests.Select(r => Run(small, r))).WaitAsync(Limit);
        Assert.True(small.GetMetrics().Scheduling.Preemptions > 0, "the pool was meant to be too small");
        for (int i = 0; i < requests.Length; i++)
            Assert.Equal(Tokens(await Run(big, requests[i]).WaitAsync(Limit)), Tokens(results[i]));
        await Idle(small);
        Assert.Null(small.Pool.Audit());
        Assert.Equal(small.Pool.PageCount, small.Pool.FreePages);
    }

    /// <summary>A pool that holds one adapter at a time besides the KV: adapters are evicted and reloaded between and
    /// within batches, and outputs equal those from a pool where all stay resident.</summary>
    [Fact]
    public async Task EvictionAndReloadUnderMemoryPressureChangeNoOutput()
    {
        // rank-8 all-module adapter: 320 pages; pool 700 pages = two adapters and some KV; host memory holds one
        // adapter (72 kB), so reloads read the disk, on the thread pool while others run
        var small = _h.Engine(o => { o.PoolBytes = 700 * 256; o.HostAdapterCacheBytes = 80_000; return o; });
        var big = _h.Engine();
        for (int i = 0; i < 4; i++)
        {
            string f = _h.Adapter(8, [.. LoraTargets.All], 20 + i);
            small.RegisterAdapter($"a{i}", f);
            big.RegisterAdapter($"a{i}", f);
        }
        var requests = Enumerable.Range(0, 12).Select(i => new GenerationRequest
        {
            PromptTokenIds = [317, 10 + i, 20 + i, 30],
            AdapterId = $"a{(i * 3) % 4}",
            Sampling = new SamplingParams { Temperature = 0, MaxTokens = 5, IgnoreEos = true },
        }).ToArray();
        var sequential = new List<int[]>();
        foreach (var r in requests) sequential.Add(Tokens(await Run(small, r).WaitAsync(Limit)));
        var concurrent = await Task.WhenAll(requests.Select(r => Run(small, r))).WaitAsync(Limit);
        var m = small.GetMetrics();
        Assert.True(m.Adapters.Evictions > 0 && m.Adapters.Loads > 4, $"{m.Adapters.Loads} loads, {m.Adapters.Evictions} evictions");
        Assert.True(m.Adapters.InPool <= 2);
        Assert.True(m.Adapters.DiskLoads > 4 + m.Adapters.Loads / 2, $"{m.Adapters.DiskLoads} disk loads");
        for (int i = 0; i < requests.Length; i++)
        {
            var expected = Tokens(await Run(big, requests[i]).WaitAsync(Limit));
            Assert.Equal(expected, sequential[i]);
            Assert.Equal(expected, Tokens(concurrent[i]));
        }
        Assert.Equal(0, big.GetMetrics().Adapters.Evictions);
        await Idle(small);
        Assert.Null(small.Pool.Audit());
    }

    [Fact]
    public async Task CancellationFreesPagesAndOthersKeepGoing()
    {
        var e = _h.Engine();
        e.Steps = new SemaphoreSlim(0); // the engine runs only the iterations this test allows
        using var cts = new CancellationTokenSource();
        var other = Run(e, new GenerationRequest { PromptTokenIds = [317, 3], Sampling = new SamplingParams { MaxTokens = 40, IgnoreEos = true, Seed = 1 } });
        int seen = 0;
        var cancelled = Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in e.GenerateAsync(new GenerationRequest { PromptTokenIds = [317, 4, 5], Sampling = new SamplingParams { MaxTokens = 50, IgnoreEos = true } }, cts.Token))
                if (++seen == 2) cts.Cancel();
        });
        // At most 20 iterations (20 tokens of the 50) before the reader cancels, however slow it is: the cancel is
        // queued before the engine may run on, so this request is cancelled, never finished.
        for (int i = 0; i < 20 && !cts.IsCancellationRequested; i++)
        {
            e.Steps.Release();
            await Task.Delay(10);
        }
        await Until(() => cts.IsCancellationRequested, () => $"the reader saw {seen} tokens");
        e.Steps.Release(int.MaxValue / 2);
        await cancelled.WaitAsync(Limit);
        // a reader that stops early (break) also cancels
        await foreach (var ev in e.GenerateAsync(new GenerationRequest { PromptTokenIds = [317, 6], Sampling = new SamplingParams { MaxTokens = 50, IgnoreEos = true } }))
            break;
        Assert.Equal(40, Tokens(await other.WaitAsync(Limit)).Length);
        // A cancel can reach the loop after the pages are free (a request cancelled before admission holds none): wait
        // until all three are accounted for, then for the engine to be idle.
        var deadline = DateTime.UtcNow + Limit;
        while (e.GetMetrics() is var seenSoFar && seenSoFar.Requests.Cancelled + seenSoFar.Requests.Finished < 3 && DateTime.UtcNow < deadline)
            await Task.Delay(5);
        await Idle(e);
        var m = e.GetMetrics();
        // the first was cancelled; the one whose reader broke off too, unless the engine finished it first
        Assert.True(m.Requests.Cancelled >= 1 && m.Requests.Cancelled + m.Requests.Finished == 3, m.ToString());
        Assert.Equal(0, m.Pool.KvPages);
        Assert.Equal(m.Pool.Pages, m.Pool.FreePages);
        Assert.Null(e.Pool.Audit());
    }

    [Fact]
    public async Task StopTokensStopStringsAndLogprobsWorkAsInTheSimpleEngine()
    {
        var g = Golden.Load("llama3_scaled_bf16");
        var e = _h.Engine(name: "llama3_scaled_bf16");
        var r = new GenerationRequest { PromptTokenIds = g.Prompts[0], Sampling = new SamplingParams { Temperature = 0, MaxTokens = 10, StopTokenIds = [g.DecodeTokens[2]], Logprobs = 2 } };
        var events = await Run(e, r).WaitAsync(Limit);
        Assert.Equal(g.DecodeTokens[..2], Tokens(events));
        Assert.Equal(FinishReason.Stop, events[^1].FinishReason);
        Assert.Equal(3, events[^1].Usage!.CompletionTokens);
        Assert.All(events.Where(x => x.TokenId != null), x => Assert.Equal(x.TokenId, x.Logprobs!.Top[0].TokenId));
        string stop = Engine.FakeTokenizer.Piece(g.DecodeTokens[2]) + Engine.FakeTokenizer.Piece(g.DecodeTokens[3]);
        var s = await Run(e, r with { Sampling = new SamplingParams { Temperature = 0, MaxTokens = 10, StopStrings = [stop] } }).WaitAsync(Limit);
        string all = string.Concat(g.DecodeTokens.Select(Engine.FakeTokenizer.Piece));
        Assert.Equal(all[..all.IndexOf(stop, StringComparison.Ordinal)], string.Concat(s.Select(x => x.Text)));
    }

    [Fact]
    public async Task APromptThatCanNeverFitInThePoolIsRefusedUpFront()
    {
        var e = _h.Engine(o => { o.PoolBytes = 40 * 256; return o; }); // 20 positions
        var ex = await Assert.ThrowsAsync<ArgumentException>(() => Run(e, new GenerationRequest { PromptTokenIds = Enumerable.Repeat(7, 30).ToArray() }));
        Assert.Contains("page pool", ex.Message);
        // a prompt that fits but whose completion would not: it ends with length when the pool is full
        var events = await Run(e, new GenerationRequest { PromptTokenIds = Enumerable.Repeat(7, 15).ToArray(), Sampling = new SamplingParams { MaxTokens = 30, IgnoreEos = true } }).WaitAsync(Limit);
        Assert.Equal(FinishReason.Length, events[^1].FinishReason);
        Assert.True(events[^1].Usage!.CompletionTokens <= 5);
    }
}
