using System.Collections.Concurrent;
using System.Diagnostics;
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
        public Task? Copy;                  // its swap copy on the copy thread, until the loop takes it back (see CopyKind)
        public CopyKind CopyKind;
        public bool Orphaned;               // left the engine while Copy ran: everything is freed once the copy is done
        public int Sampled;                 // tokens sampled so far (the stop token included)
        public int CancelRequested;
        public bool Closed;
    }

    /// <summary>What a request's swap copy does to its pages once the loop takes the copy back.</summary>
    private enum CopyKind
    {
        /// <summary>KV pages → host copy: the pages go back to the pool (a sequence readmitted first keeps them).</summary>
        Out,
        /// <summary>host copy → reserved pages: the sequence becomes runnable.</summary>
        In,
        /// <summary>A copy in whose sequence was preempted again before it ran: the pages go back, the host copy stays.</summary>
        InUndone,
    }

    /// <summary>The scheduler's view of memory, on the pool: KV pages per sequence and adapter pins; preempted caches
    /// swapped to host memory. With <see cref="InferenceOptions.AsyncSwap"/> the swap copies run on the copy thread while
    /// the engine computes, and the loop never waits for one: a swapped-out sequence keeps its pages until its copy is
    /// done (they are taken back at the start of an iteration; a sequence that needs them meanwhile waits an iteration
    /// instead of preempting more), and a swapped-in one is admitted at once but runs once its copy back is done.</summary>
    private sealed class PoolMemory(ServingEngine e) : ISwappingMemory
    {
        public bool TryReserve(Sequence s, int tokens)
        {
            var r = (Request)s.Handle!;
            var store = e._store;
            if (r.Copy is not null)
            {
                // copying in: not runnable yet (the scheduler asks IsReady first); a copy under way: next iteration
                if (r.CopyKind == CopyKind.In || !r.Copy.IsCompleted) return false;
                e.TakeBack(r, readmit: true);
            }
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
                if (e._options.AsyncSwap && swapped.Owner == e._swap)
                {
                    // copied back on the copy thread while this iteration computes; the sequence runs once it is done
                    // (a reused prefix is copied here instead: its sequence has prompt tokens to compute at once)
                    swapped.Owner.CheckSwapIn(swapped, r.Cache);
                    var cache = r.Cache;
                    e.StartCopy(r, CopyKind.In, () => swapped.Owner.CopyIn(swapped, cache, parallel: false));
                    return true;
                }
                r.Swapped = null;
                swapped.Owner.SwapIn(swapped, r.Cache);
            }
            return true;
        }

        public bool IsReady(Sequence s)
        {
            var r = (Request)s.Handle!;
            if (r.Copy is null) return true;
            if (r.CopyKind != CopyKind.In || !r.Copy.IsCompletedSuccessfully) return false; // (a failed one ends at the next reap)
            e.TakeBack(r, readmit: false);
            return true;
        }

        public bool RoomPending(Sequence s, int tokens)
        {
            int coming = 0;
            foreach (var c in e._copies)
                if (c.CopyKind != CopyKind.In || c.Orphaned) coming += c.Cache.PagesHeld;
            if (coming == 0) return false;
            var r = (Request)s.Handle!;
            var store = e._store;
            int kvNeed = r.Cache.PagesToReserve(tokens);
            int adapterNeed = 0;
            if (s.AdapterId is not null && r.Adapter is null)
            {
                try { adapterNeed = store.PagesToLoad(s.AdapterId); }
                catch (KeyNotFoundException) { return false; } // unregistered meanwhile: TryReserve reports it
            }
            return e.Unified ? kvNeed + adapterNeed <= e._pool.FreePages + store.ReclaimablePages + coming
                : kvNeed <= e._pool.FreePages + coming;
        }

        public bool TrySwapOut(Sequence s)
        {
            var r = (Request)s.Handle!;
            if (r.Copy is not null)
            {
                // preempted again before its copy back was used: the host copy still holds its tokens; the pages go
                // back once the copy is done
                r.CopyKind = CopyKind.InUndone;
                ReleaseAdapter(r);
                return true;
            }
            if (e._swap is null || s.Computed < e._options.SwapMinTokens || r.Cache.Length != s.Computed || r.Swapped is not null) return false;
            if (!e._options.AsyncSwap)
            {
                if (e._swap.SwapOut(r.Cache) is not { } copied) return false;
                Release(s);
                r.Swapped = copied;
                return true;
            }
            if (e._swap.BeginSwapOut(r.Cache) is not { } swapped) return false;
            // copied on the copy thread while the next iteration computes; its pages are taken back once that is done
            ReleaseAdapter(r);
            r.Swapped = swapped;
            var cache = r.Cache;
            var space = e._swap;
            e.StartCopy(r, CopyKind.Out, () => space.CopyOut(cache, swapped, parallel: false));
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
            ReleaseAdapter(r);
            if (r.Copy is not null)
            {
                // its pages and host buffer are the copy's until it ends: freed when the loop takes the copy back
                r.Orphaned = true;
                return;
            }
            if (r.Swapped is { } swapped)
            {
                r.Swapped = null;
                swapped.Owner.Drop(swapped);
            }
            r.Cache.Release();
        }

        public void ReleaseAdapter(Request r)
        {
            if (r.Adapter is { } a)
            {
                r.Adapter = null;
                e._store.Release(a);
            }
        }
    }

    // ---- swap copies (FastSwitch-style: on their own thread, overlapped with the forward pass) ------------------

    /// <summary>The thread that runs swap copies one after another while the engine thread computes.</summary>
    private sealed class SwapCopier : IDisposable
    {
        private readonly BlockingCollection<(Action Work, TaskCompletionSource Done)> _queue = [];
        private readonly Thread _thread;

        public SwapCopier()
        {
            _thread = new Thread(Work) { IsBackground = true, Name = "loom-swap-copy" };
            _thread.Start();
        }

        public Task Start(Action copy)
        {
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _queue.Add((copy, done));
            return done.Task;
        }

        private void Work()
        {
            foreach (var (copy, done) in _queue.GetConsumingEnumerable())
            {
                try
                {
                    copy();
                    done.SetResult();
                }
                catch (Exception e) { done.SetException(e); }
            }
        }

        public void Dispose()
        {
            _queue.CompleteAdding();
            _thread.Join();
            _queue.Dispose();
        }
    }

    private void StartCopy(Request r, CopyKind kind, Action copy)
    {
        var hook = SwapCopyHook;
        var cache = r.Cache;
        r.CopyKind = kind;
        r.Copy = _copier.Start(hook is null ? copy : () => { hook(cache, kind == CopyKind.Out); copy(); });
        _copies.Add(r);
    }

    /// <summary>Takes back a copy that is done. Out: the pages return to the pool, or, when the sequence is being
    /// readmitted, it keeps them and drops the host copy (nothing to copy back); a failed copy out keeps the pages and
    /// drops the host copy. In: the cache is whole and the host copy freed (a failed copy in throws: the request ends).
    /// InUndone: the pages return, the host copy stays, unless the sequence is being readmitted and the copy
    /// succeeded: then the copy back is complete. An orphan (its request left meanwhile) frees everything.</summary>
    private void TakeBack(Request r, bool readmit)
    {
        var copy = r.Copy!;
        r.Copy = null;
        _copies.Remove(r);
        bool ok = copy.IsCompletedSuccessfully;
        var host = r.Swapped;
        if (r.Orphaned)
        {
            r.Orphaned = false;
            r.Swapped = null;
            if (host is not null) host.Owner.Drop(host);
            r.Cache.Release();
            return;
        }
        switch (r.CopyKind)
        {
            case CopyKind.Out when ok && !readmit:
                r.Cache.Release();
                break;
            case CopyKind.Out: // readmitted, or the copy failed: the pages still hold the tokens
                r.Swapped = null;
                host!.Owner.Drop(host);
                break;
            case CopyKind.In:
                copy.GetAwaiter().GetResult();
                r.Swapped = null;
                host!.Owner.CompleteSwapIn(host, r.Cache);
                break;
            case CopyKind.InUndone when ok && readmit:
                r.Swapped = null;
                host!.Owner.CompleteSwapIn(host, r.Cache);
                break;
            case CopyKind.InUndone:
                r.Cache.Release();
                break;
        }
    }

    /// <summary>Takes back every copy that is done (at the start of an iteration): swapped-out pages return to the
    /// pool, copies in become runnable, orphans are freed.</summary>
    private void ReapCopies()
    {
        for (int i = _copies.Count - 1; i >= 0; i--)
        {
            if (i >= _copies.Count) continue;
            var r = _copies[i];
            if (!r.Copy!.IsCompleted) continue;
            try { TakeBack(r, readmit: false); }
            catch (Exception error) { Fail(r, error); }
        }
    }

    /// <summary>Nothing to compute: wait for the next copy to finish (or a new request, or 5 ms). stalled: work waits
    /// for it, so the wait counts as engine time lost to swapping.</summary>
    private void WaitForCopies(bool stalled)
    {
        long start = Stopwatch.GetTimestamp();
        WaitHandle.WaitAny([_wake, ((IAsyncResult)_copies[0].Copy!).AsyncWaitHandle], 5);
        if (stalled) Interlocked.Add(ref _c.SwapWaitTicks, Stopwatch.GetTimestamp() - start);
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
        EndTraining(new ObjectDisposedException(nameof(ServingEngine)));
        FailEmbeddings(new ObjectDisposedException(nameof(ServingEngine)));
    }

    private void Iteration()
    {
        if (Steps is { } steps)
            while (!steps.Wait(10)) if (_stopping) return;
        Drain();
        RunEmbeddings();
        ReapCopies();
        if (_scheduler.IsIdle)
        {
            Publish(0, 0);
            if (TrainingSlice(0, 0)) return; // nothing to serve: training takes the time
            long idle = Stopwatch.GetTimestamp();
            if (_copies.Count > 0) WaitForCopies(stalled: false); // copies of requests that left: their pages come back
            else _wake.WaitOne();
            Interlocked.Add(ref _c.IdleTicks, Stopwatch.GetTimestamp() - idle);
            return;
        }
        var plan = _scheduler.Schedule();
        if (_training.Count != 0 && (plan.OutOfMemory.Count > 0 || plan.Preempted.Count > 0 || (plan.Chunks.Count == 0 && _scheduler.Waiting.Count > 0)))
            ReclaimTrainingMemory();
        foreach (var (s, error) in plan.Failed) Fail((Request)s.Handle!, error);
        foreach (var s in plan.OutOfMemory) Finish((Request)s.Handle!, FinishReason.Length);
        Interlocked.Add(ref _c.Preemptions, plan.Preempted.Count);
        Interlocked.Exchange(ref _c.FairnessPreemptions, _scheduler.FairnessPreemptions);
        Interlocked.Exchange(ref _c.RecomputeTokens, _scheduler.RecomputeTokens);
        Prefetch();
        if (plan.Chunks.Count == 0)
        {
            // nothing can run now: the queue head waits for an adapter read, for memory, or for a swap copy
            Publish(0, 0);
            if (TrainingSlice(0, 0)) return;
            if (_copies.Count > 0) WaitForCopies(stalled: true);
            else _wake.WaitOne(5);
            return;
        }
        bool training = _training.Count != 0 || !_trainingArrivals.IsEmpty;
        long start = Stopwatch.GetTimestamp();
        Step(plan);
        long served = Math.Max(1, Stopwatch.GetTimestamp() - start);
        Interlocked.Add(ref _c.StepTicks, served);
        if (training) TrainingSlice(_options.TokenBudget - plan.Tokens, served);
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
        if (token < 0)
        {
            Finish(r, FinishReason.Length); // the grammar allows no token of this vocabulary here
            return;
        }
        r.Sampler.Accept(token);
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
        if (r.Stops.Stopped || r.Sampler.Done) Finish(r, FinishReason.Stop);
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
