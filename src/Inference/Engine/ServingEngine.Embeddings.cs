using System.Collections.Concurrent;
using Loom.Inference.Model;

namespace Loom.Inference.Engine;

/// <summary>
/// Embeddings on the engine loop thread, between iterations: each input is run through the model (prefill only, in
/// chunks of the prefill size, with its own contiguous KV cache freed afterwards), the final-normed hidden states are
/// summed over its positions, and the mean is L2-normalized. An adapter is made resident and pinned in the pool for
/// the job, as a request's is.
/// </summary>
public sealed partial class ServingEngine
{
    private sealed record EmbeddingJob(IReadOnlyList<int[]> Inputs, string? AdapterId, CancellationToken Cancellation)
    {
        public readonly TaskCompletionSource<float[][]> Done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private readonly ConcurrentQueue<EmbeddingJob> _embeddings = new();
    private ForwardState? _embedState; // (prefill chunk tokens, 1 sequence); created at the first job (loop thread)

    public Task<float[][]> EmbedAsync(IReadOnlyList<int[]> inputs, string? adapterId, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_stopping, this);
        for (var i = 0; i < inputs.Count; i++)
        {
            if (inputs[i].Length == 0) throw new ArgumentException($"input {i} is empty");
            if (inputs[i].Length > _model.MaxContext) throw new ArgumentException($"input {i} has {inputs[i].Length} tokens, more than the context of {_model.MaxContext}");
            foreach (var id in inputs[i])
                if ((uint)id >= (uint)_model.Config.VocabSize) throw new ArgumentException($"input {i} has token {id}, outside the vocabulary of {_model.Config.VocabSize}");
        }
        if (adapterId is not null && !IsAdapterRegistered(adapterId)) throw new ArgumentException($"adapter '{adapterId}' is not registered");
        var job = new EmbeddingJob(inputs, adapterId, cancellationToken);
        _embeddings.Enqueue(job);
        _wake.Set();
        return job.Done.Task;
    }

    private void RunEmbeddings()
    {
        while (_embeddings.TryDequeue(out var job))
        {
            if (job.Cancellation.IsCancellationRequested) { job.Done.TrySetCanceled(job.Cancellation); continue; }
            try { job.Done.TrySetResult(Embed(job)); }
            catch (OperationCanceledException) { job.Done.TrySetCanceled(job.Cancellation); }
            catch (Exception e) { job.Done.TrySetException(e); }
        }
    }

    private float[][] Embed(EmbeddingJob job)
    {
        var residency = job.AdapterId is { } id
            ? _store.EnsureResident(id) ?? throw new InvalidOperationException("the engine's memory is full; retry the embeddings later")
            : null;
        try
        {
            int dim = _model.Config.HiddenSize;
            var state = _embedState ??= _model.CreateState(Math.Min(_options.PrefillChunk, _options.TokenBudget), 1, maxLoraRank: _options.MaxLoraRank);
            var result = new float[job.Inputs.Count][];
            var sum = new double[dim]; // (dim) running sum of one input's hidden states
            for (var i = 0; i < job.Inputs.Count; i++)
            {
                job.Cancellation.ThrowIfCancellationRequested();
                var tokens = job.Inputs[i];
                Array.Clear(sum);
                var cache = _model.CreateCache(tokens.Length);
                for (var start = 0; start < tokens.Length; start += state.MaxTokens)
                {
                    var chunk = tokens.AsSpan(start, Math.Min(state.MaxTokens, tokens.Length - start));
                    state.Clear();
                    state.Add(cache, chunk, residency);
                    _model.Forward(state, LogitsMode.HiddenStates);
                    for (var t = 0; t < chunk.Length; t++)
                    {
                        var h = state.Hidden(t);
                        for (var d = 0; d < dim; d++) sum[d] += h[d];
                    }
                }
                double norm = 0;
                for (var d = 0; d < dim; d++) { sum[d] /= tokens.Length; norm += sum[d] * sum[d]; }
                norm = Math.Sqrt(norm);
                var v = result[i] = new float[dim];
                for (var d = 0; d < dim; d++) v[d] = norm > 0 ? (float)(sum[d] / norm) : 0f;
            }
            return result;
        }
        finally
        {
            if (residency is not null) _store.Release(residency);
        }
    }

    private void FailEmbeddings(Exception error)
    {
        while (_embeddings.TryDequeue(out var job)) job.Done.TrySetException(error);
    }
}
