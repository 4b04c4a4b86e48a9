using System.Diagnostics;
using Loom.Inference.Model;
using Loom.Inference.Sampling;
using Loom.Inference.Scheduling;

namespace Loom.Inference.Engine;

public sealed partial class ServingEngine
{
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
        if (training) BoardTraining(plan);
        long start = Stopwatch.GetTimestamp();
        Step(plan);
        long served = Math.Max(1, Stopwatch.GetTimestamp() - start);
        Interlocked.Add(ref _c.StepTicks, served);
        LandTraining();
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
        while (_arrivals.TryDequeue(out var r)) Arrive(r);
        while (_cancels.TryDequeue(out var r))
        {
            if (r.Closed || r.Sequence.Arrival < 0) continue; // finished already, or not yet arrived (handled above)
            _scheduler.Remove(r.Sequence);
            Close(r, new OperationCanceledException());
            Interlocked.Increment(ref _c.Cancelled);
        }
    }

    private void Arrive(Request r)
    {
        if (Volatile.Read(ref r.CancelRequested) != 0)
        {
            Close(r, new OperationCanceledException());
            Interlocked.Increment(ref _c.Cancelled);
            return;
        }
        _scheduler.Add(r.Sequence);
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
            if (_blocks is not null) r.Cache.CheckWritable(); // (a shared block is never written)
            _state.Add(r.Cache, chunk.Sequence.Tokens(chunk.Start, chunk.Count), r.Adapter);
        }
        try
        {
            if (_deviceSampling is { } device) ForwardSample(device);
            else if (_ride is { } ride) ForwardRiding(ride);
            else _model.Forward(_state);
        }
        catch (Exception e)
        {
            // a fault in the forward pass ends the requests of this batch, not the engine
            foreach (var chunk in _batch) Fail((Request)chunk.Sequence.Handle!, e);
            return;
        }
        _scheduler.Completed(plan);
        if (_blocks is not null)
            foreach (var chunk in _batch) PublishBlocks((Request)chunk.Sequence.Handle!);
        Interlocked.Increment(ref _c.Iterations);
        Interlocked.Add(ref _c.TokensComputed, plan.Tokens);
        for (int i = 0; i < _batch.Count; i++)
        {
            var chunk = _batch[i];
            if (!chunk.Samples) continue;
            var r = (Request)chunk.Sequence.Handle!;
            if (_sampling is not { } rows) SampleNext(r, _state.Logits(i), null);
            else if (rows.Sampled(i)) Emit(r, rows.Results[i].Token, rows.Logprobs(i) is { } l ? WithText(l) : null);
            else SampleNext(r, _state.Logits(i), rows.Rows[i].Mode == DeviceSampleMode.Random ? rows.Rows[i].Draw : null);
        }
        Publish(_batch.Count, plan.Tokens);
    }

    /// <summary>The forward pass with each row sampled where it can be: on the device, or (grammar, logit bias,
    /// penalties) on the host from its logits row, which alone comes back.</summary>
    private void ForwardSample(IDeviceSampling device)
    {
        var rows = _sampling!;
        int vocab = _model.Config.VocabSize;
        for (int i = 0; i < _batch.Count; i++)
        {
            var chunk = _batch[i];
            var r = (Request)chunk.Sequence.Handle!;
            rows.Rows[i] = chunk.Samples && !r.Closed ? r.Sampler.DeviceRow(vocab, r.Logprobs) : DeviceSampleRow.Skip;
        }
        device.ForwardSample(_model, _state, rows);
    }

    /// <param name="draw">This step's uniform, drawn already for the device (which gave the row back); null: the sampler
    /// draws.</param>
    private void SampleNext(Request r, ReadOnlySpan<float> logits, double? draw)
    {
        if (r.Closed) return;
        int token = draw is double u ? r.Sampler.SampleWithDraw(logits, u) : r.Sampler.Sample(logits);
        if (token < 0)
        {
            Finish(r, FinishReason.Length); // the grammar allows no token of this vocabulary here
            return;
        }
        Emit(r, token, r.Logprobs is int top ? WithText(Sampling.Sampler.Logprobs(logits, token, top)) : null);
    }

    /// <summary>Streams the sampled token, or ends the request on a stop.</summary>
    private void Emit(Request r, int token, TokenLogprobs? logprobs)
    {
        if (r.Closed) return;
        r.Sampler.Accept(token);
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
