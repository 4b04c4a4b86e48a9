using System.Threading.Channels;
using Loom.Inference.Memory;
using Loom.Inference.Scheduling;
using Loom.Inference.Sampling;
using Loom.Inference.Tokenization;

namespace Loom.Inference.Engine;

public sealed partial class ServingEngine
{
    /// <summary>A request's engine-side state: its channel, sampler, text streaming, KV cache and adapter pin.</summary>
    private sealed class Request(ServingEngine engine, Sequence sequence, int maxNew, Sampler sampler, IStreamingDecoder? decoder,
        StopStringMatcher stops, HashSet<int> stopIds, int? logprobs, PagedKvCache cache)
    {
        public readonly ServingEngine Engine = engine;
        public readonly Sequence Sequence = sequence;
        public readonly int MaxNew = maxNew;
        public readonly Sampler Sampler = sampler;
        public readonly IStreamingDecoder? Decoder = decoder;
        public readonly StopStringMatcher Stops = stops;
        public readonly HashSet<int> StopIds = stopIds;
        public readonly int? Logprobs = logprobs;
        public readonly PagedKvCache Cache = cache;
        public readonly Channel<GenerationEvent> Channel = System.Threading.Channels.Channel.CreateUnbounded<GenerationEvent>(
            new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        public AdapterResidency? Adapter;   // pinned while the sequence runs
        public SwappedKv? Swapped;          // its KV in host memory while preempted by swap
        public int Sampled;                 // tokens sampled so far (the stop token included)
        public int CancelRequested;
        public bool Closed;
    }

    /// <summary>The scheduler's view of memory, on the pool: KV pages per sequence and adapter pins; preempted caches
    /// swapped to host memory.</summary>
    private sealed class PoolMemory(ServingEngine e) : ISwappingMemory
    {
        public bool TryReserve(Sequence s, int tokens)
        {
            var r = (Request)s.Handle!;
            var store = e._store;
            int kvNeed = r.Cache.PagesToReserve(tokens);
            bool needsAdapter = s.AdapterId is not null && r.Adapter is null;
            int adapterNeed = 0;
            if (needsAdapter)
            {
                try { adapterNeed = store.PagesToLoad(s.AdapterId!); }
                catch (KeyNotFoundException) { throw new InvalidOperationException($"adapter '{s.AdapterId}' was unregistered"); }
            }
            if (kvNeed + adapterNeed == 0 && !needsAdapter) return true;
            if (needsAdapter && !WarmInHost(s.AdapterId!)) return false;
            // the shared budget (S-LoRA): free pages plus what evicting unpinned adapters would free
            if (e.Unified ? kvNeed + adapterNeed > e._pool.FreePages + store.ReclaimablePages
                : kvNeed > e._pool.FreePages || adapterNeed > e._adapterPool.FreePages + store.ReclaimablePages) return false;
            if (needsAdapter)
            {
                r.Adapter = store.EnsureResident(s.AdapterId!);
                if (r.Adapter is null) return false;
            }
            if (kvNeed > 0 && !r.Cache.TryReserve(tokens) && !(e.Unified && store.MakeRoom(kvNeed) && r.Cache.TryReserve(tokens)))
            {
                if (needsAdapter)
                {
                    store.Release(r.Adapter!);
                    r.Adapter = null;
                }
                return false;
            }
            if (r.Swapped is { } swapped)
            {
                r.Swapped = null;
                swapped.Owner.SwapIn(swapped, r.Cache);
            }
            return true;
        }

        public bool TrySwapOut(Sequence s)
        {
            var r = (Request)s.Handle!;
            if (e._swap is null || s.Computed < e._options.SwapMinTokens || r.Cache.Length != s.Computed || r.Swapped is not null) return false;
            if (e._swap.SwapOut(r.Cache) is not { } swapped) return false;
            Release(s);
            r.Swapped = swapped;
            return true;
        }

        /// <summary>Never stall a running batch on a disk read: when sequences are running and the adapter is neither in
        /// the pool nor in host memory, read it on the thread pool and admit the sequence in a later iteration. Once that
        /// read is done (cached, or not cacheable, or failed) the synchronous path runs and reports any error.</summary>
        private bool WarmInHost(string id)
        {
            var store = e._store;
            if (e._scheduler.Running.Count == 0 || store.IsResident(id) || store.IsInHostCache(id))
            {
                e._hostLoads.Remove(id);
                return true;
            }
            if (!e._hostLoads.TryGetValue(id, out var read))
            {
                e._hostLoads[id] = store.Prefetch([id]);
                return false;
            }
            if (!read.IsCompleted) return false;
            e._hostLoads.Remove(id);
            return true;
        }

        public void Release(Sequence s)
        {
            var r = (Request)s.Handle!;
            if (r.Swapped is { } swapped)
            {
                r.Swapped = null;
                swapped.Owner.Drop(swapped);
            }
            r.Cache.Release();
            if (r.Adapter is { } a)
            {
                r.Adapter = null;
                e._store.Release(a);
            }
        }
    }

    // ---- the loop -------------------------------------------------------------------------------------------

    private void Loop()
    {
        while (!_stopping)
        {
            try { Iteration(); }
            catch (Exception e)
            {
                // a fault outside the forward pass leaves the requests in an unknown state: end them, keep serving
                FailAll(e);
            }
        }
        // shutting down: end every stream
        Drain();
        FailAll(new ObjectDisposedException(nameof(ServingEngine)));
    }

    private void Iteration()
    {
        Drain();
        if (_scheduler.IsIdle)
        {
            Publish(0, 0);
            _wake.WaitOne();
            return;
        }
        var plan = _scheduler.Schedule();
        foreach (var (s, error) in plan.Failed) Fail((Request)s.Handle!, error);
        foreach (var s in plan.OutOfMemory) Finish((Request)s.Handle!, FinishReason.Length);
        Interlocked.Add(ref _c.Preemptions, plan.Preempted.Count);
        Interlocked.Exchange(ref _c.FairnessPreemptions, _scheduler.FairnessPreemptions);
        Interlocked.Exchange(ref _c.RecomputeTokens, _scheduler.RecomputeTokens);
        Prefetch();
        if (plan.Chunks.Count == 0)
        {
            // nothing can run now: the queue head waits for an adapter read or for memory
            Publish(0, 0);
            _wake.WaitOne(5);
            return;
        }
        Step(plan);
    }

    private void FailAll(Exception error)
    {
        foreach (var s in _scheduler.Running.Concat(_scheduler.Waiting).ToArray())
        {
            var r = (Request)s.Handle!;
            try { Fail(r, error); }
            catch (Exception) { Close(r, error); } // its memory could not be released cleanly; the stream still ends
        }
    }

    /// <summary>New requests join the queue; cancelled ones leave it and free their pages now.</summary>
    private void Drain()
    {
        while (_arrivals.TryDequeue(out var r))
        {
            if (Volatile.Read(ref r.CancelRequested) != 0) { Close(r, new OperationCanceledException()); Interlocked.Increment(ref _c.Cancelled); continue; }
            // a next turn of the same tenant (same adapter) starts from the KV its earlier turn left
            var s = r.Sequence;
            if (_prefix is not null && s.TenantId is { } tenant && _prefix.Take(tenant, s.AdapterId, s.Tokens(0, s.PromptLength)) is { } reused)
            {
                r.Swapped = reused;
                s.Computed = reused.Length;
            }
            _scheduler.Add(s);
        }
        while (_cancels.TryDequeue(out var r))
        {
            if (r.Closed || r.Sequence.Arrival < 0) continue; // finished already, or not yet arrived (handled above)
            _scheduler.Remove(r.Sequence);
            Close(r, new OperationCanceledException());
            Interlocked.Increment(ref _c.Cancelled);
        }
    }

    /// <summary>Warms the host cache with the adapters of queued requests while this iteration computes.</summary>
    private void Prefetch()
    {
        if (!_prefetch.IsCompleted || _scheduler.Waiting.Count == 0) return;
        _prefetchIds.Clear();
        foreach (var s in _scheduler.Waiting)
        {
            if (s.AdapterId is { } id) _prefetchIds.Add(id);
            if (_prefetchIds.Count == 16) break;
        }
        if (_prefetchIds.Count > 0) _prefetch = _store.Prefetch(_prefetchIds.ToArray());
    }

    private void Step(SchedulerOutput plan)
    {
        // sequences of one adapter side by side: one LoRA segment per adapter
        _batch.Clear();
        _batch.AddRange(plan.Chunks);
        _batch.Sort(static (a, b) =>
        {
            int c = string.CompareOrdinal(a.Sequence.AdapterId, b.Sequence.AdapterId);
            return c != 0 ? c : a.Sequence.Arrival.CompareTo(b.Sequence.Arrival);
        });
        _state.Clear();
        foreach (var chunk in _batch)
        {
            var r = (Request)chunk.Sequence.Handle!;
            _state.Add(r.Cache, chunk.Sequence.Tokens(chunk.Start, chunk.Count), r.Adapter);
        }
        try
        {
            _model.Forward(_state);
        }
        catch (Exception e)
        {
            // a fault in the forward pass ends the requests of this batch, not the engine
            foreach (var chunk in _batch) Fail((Request)chunk.Sequence.Handle!, e);
            return;
        }
        _scheduler.Completed(plan);
        Interlocked.Increment(ref _c.Iterations);
        Interlocked.Add(ref _c.TokensComputed, plan.Tokens);
        for (int i = 0; i < _batch.Count; i++)
        {
            var chunk = _batch[i];
            if (chunk.Samples) SampleNext((Request)chunk.Sequence.Handle!, _state.Logits(i));
        }
        Publish(_batch.Count, plan.Tokens);
    }

    private void SampleNext(Request r, ReadOnlySpan<float> logits)
    {
        if (r.Closed) return;
        int token = r.Sampler.Sample(logits);
        var logprobs = r.Logprobs is int top ? WithText(Sampling.Sampler.Logprobs(logits, token, top)) : null;
        r.Sampled++;
        Interlocked.Increment(ref _c.TokensGenerated);
        if (r.StopIds.Contains(token))
        {
            Finish(r, FinishReason.Stop);
            return;
        }
        string text = r.Stops.Push(r.Decoder?.Push(token) ?? "");
        r.Channel.Writer.TryWrite(new GenerationEvent { TokenId = token, Text = text, Logprobs = logprobs });
        if (r.Stops.Stopped) Finish(r, FinishReason.Stop);
        else if (r.Sampled >= r.MaxNew) Finish(r, FinishReason.Length);
        else r.Sequence.Append(token);
    }

    private void Finish(Request r, FinishReason reason)
    {
        string rest = r.Stops.Stopped ? "" : r.Stops.Push(r.Decoder?.Flush() ?? "") + r.Stops.Flush();
        if (r.Stops.Stopped) reason = FinishReason.Stop;
        if (_prefix is not null && r.Sequence.TenantId is { } tenant && r.Swapped is null && r.Cache.Length > 0)
            _prefix.Put(tenant, r.Sequence.AdapterId, r.Sequence.Tokens(0, r.Cache.Length), r.Cache);
        _scheduler.Remove(r.Sequence);
        r.Channel.Writer.TryWrite(new GenerationEvent { Text = rest, FinishReason = reason, Usage = new TokenUsage(r.Sequence.PromptLength, r.Sampled) });
        Close(r, null);
        Interlocked.Increment(ref _c.Finished);
    }

    private void Fail(Request r, Exception error)
    {
        _scheduler.Remove(r.Sequence);
        Close(r, error);
        Interlocked.Increment(ref _c.Failed);
    }

    private static void Close(Request r, Exception? error)
    {
        if (r.Closed) return;
        r.Closed = true;
        r.Channel.Writer.TryComplete(error);
    }

    private void Publish(int sequences, int tokens)
    {
        Volatile.Write(ref _c.Running, _scheduler.Running.Count);
        Volatile.Write(ref _c.Waiting, _scheduler.Waiting.Count);
        if (sequences == 0) return;
        Volatile.Write(ref _c.LastBatchSequences, sequences);
        Volatile.Write(ref _c.LastBatchTokens, tokens);
    }

    private TokenLogprobs WithText(TokenLogprobs l)
    {
        if (_tokenizer is null) return l;
        return l with { Top = l.Top.Select(a => a with { Text = _tokenizer.Decode([a.TokenId], skipSpecialTokens: false) }).ToArray() };
    }
}
