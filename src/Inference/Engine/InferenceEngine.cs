using System.Runtime.CompilerServices;
using Loom.Inference.Model;
using Loom.Inference.Sampling;
using Loom.Inference.Tokenization;

namespace Loom.Inference.Engine;

/// <summary>A single-process engine over one loaded model, base model only. Requests run one at a time; each forward
/// step runs on the thread pool, not the caller's thread. <see cref="ServingEngine"/> (continuous batching, LoRA
/// adapters, the unified pool) is what the host serves; this one stays as the simplest reference.</summary>
public sealed class InferenceEngine : IInferenceEngine, IDisposable
{
    private readonly Transformer _model;
    private readonly ITokenizer? _tokenizer;
    private readonly ForwardState _state;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly int[] _eos;

    public ModelInfo Model { get; }

    public InferenceEngine(Transformer model, ITokenizer? tokenizer, string name = "model", int prefillChunk = 256)
    {
        _model = model;
        _tokenizer = tokenizer;
        _state = model.CreateState(Math.Max(1, prefillChunk), 1);
        var eos = new HashSet<int>(model.Config.EosTokenIds);
        if (tokenizer != null) eos.UnionWith(tokenizer.EosTokenIds);
        _eos = eos.ToArray();
        Model = new ModelInfo(name, model.Config, model.MaxContext, tokenizer);
    }

    /// <summary>Loads config.json, the safetensors weights and (when present) tokenizer.json from a model folder.</summary>
    public static InferenceEngine Load(InferenceOptions options)
    {
        string dir = options.ModelDirectory ?? throw new ArgumentException("ModelDirectory is not set");
        var config = ModelConfig.Load(dir);
        var weights = ModelWeights.Load(dir, config, options.WeightFormat);
        var model = new Transformer(weights, maxContext: options.MaxContext);
        var tokenizer = File.Exists(Path.Combine(dir, "tokenizer.json")) ? TokenizerLoader.Load(dir) : null;
        return new InferenceEngine(model, tokenizer, Path.GetFileName(Path.TrimEndingDirectorySeparator(dir)), options.PrefillChunk);
    }

    public async IAsyncEnumerable<GenerationEvent> GenerateAsync(GenerationRequest request,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var p = request.Sampling;
        p.Validate();
        if (request.AdapterId is { } adapterId) throw new ArgumentException($"adapter '{adapterId}' is not registered (this engine serves the base model only)");
        int[] prompt = PromptTokens.Of(request, _tokenizer);
        int vocab = _model.Config.VocabSize;
        if (prompt.Length == 0) throw new ArgumentException("the prompt is empty");
        foreach (int id in prompt)
            if ((uint)id >= (uint)vocab) throw new ArgumentException($"prompt token id {id} is outside the vocabulary ({vocab})");
        if (prompt.Length >= _model.MaxContext)
            throw new ArgumentException($"the prompt has {prompt.Length} tokens; the context limit is {_model.MaxContext}");

        var stopIds = new HashSet<int>(p.StopTokenIds);
        if (!p.IgnoreEos) stopIds.UnionWith(_eos);
        int maxNew = Math.Min(p.MaxTokens, _model.MaxContext - prompt.Length);
        var sampler = new Sampler(p, vocab);
        var decoder = _tokenizer?.CreateStreamingDecoder();
        var stops = new StopStringMatcher(p.StopStrings);
        var cache = _model.CreateCache(prompt.Length + maxNew);

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // prefill in chunks; the last chunk's logits give the first token
            for (int i = 0; i < prompt.Length; i += _state.MaxTokens)
            {
                int start = i, n = Math.Min(_state.MaxTokens, prompt.Length - i);
                await Task.Run(() => Step(cache, prompt.AsSpan(start, n)), cancellationToken).ConfigureAwait(false);
            }
            int generated = 0;
            FinishReason reason = FinishReason.Length;
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var logits = _state.Logits(0);
                int token = sampler.Sample(logits);
                var logprobs = p.Logprobs is int top ? WithText(Sampler.Logprobs(logits, token, top)) : null;
                generated++;
                if (stopIds.Contains(token))
                {
                    reason = FinishReason.Stop;
                    break;
                }
                string text = stops.Push(decoder?.Push(token) ?? "");
                yield return new GenerationEvent { TokenId = token, Text = text, Logprobs = logprobs };
                if (stops.Stopped)
                {
                    reason = FinishReason.Stop;
                    break;
                }
                if (generated >= maxNew) break;
                await Task.Run(() => Step(cache, [token]), cancellationToken).ConfigureAwait(false);
            }
            string rest = stops.Stopped ? "" : stops.Push(decoder?.Flush() ?? "") + stops.Flush();
            if (stops.Stopped) reason = FinishReason.Stop;
            yield return new GenerationEvent { Text = rest, FinishReason = reason, Usage = new TokenUsage(prompt.Length, generated) };
        }
        finally
        {
            _gate.Release();
        }
    }

    private void Step(IKvCache cache, ReadOnlySpan<int> tokens)
    {
        _state.Clear();
        _state.Add(cache, tokens);
        _model.Forward(_state);
    }

    private TokenLogprobs WithText(TokenLogprobs l)
    {
        if (_tokenizer is null) return l;
        return l with { Top = l.Top.Select(a => a with { Text = _tokenizer.Decode([a.TokenId], skipSpecialTokens: false) }).ToArray() };
    }

    public void RegisterAdapter(string adapterId, string folder) =>
        throw new NotSupportedException("this engine serves the base model only; use ServingEngine for adapters");

    public bool IsAdapterRegistered(string adapterId) => false;

    public void UnregisterAdapter(string adapterId) { }

    public EngineMetrics GetMetrics() => new(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);

    public void Dispose()
    {
        _model.Dispose();
        _gate.Dispose();
    }
}

/// <summary>Stands in when no model directory is configured, so the host still starts.</summary>
public sealed class UnconfiguredInferenceEngine : IInferenceEngine
{
    public ModelInfo Model => throw new InvalidOperationException("no model is configured (set Inference:ModelDirectory)");

    public IAsyncEnumerable<GenerationEvent> GenerateAsync(GenerationRequest request, CancellationToken cancellationToken = default) =>
        throw new InvalidOperationException("no model is configured (set Inference:ModelDirectory)");

    public void RegisterAdapter(string adapterId, string folder) =>
        throw new InvalidOperationException("no model is configured (set Inference:ModelDirectory)");

    public bool IsAdapterRegistered(string adapterId) =>
        throw new InvalidOperationException("no model is configured (set Inference:ModelDirectory)");

    public void UnregisterAdapter(string adapterId) =>
        throw new InvalidOperationException("no model is configured (set Inference:ModelDirectory)");

    public EngineMetrics GetMetrics() =>
        throw new InvalidOperationException("no model is configured (set Inference:ModelDirectory)");
}
