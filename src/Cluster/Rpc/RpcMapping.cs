using Loom.Inference.Engine;
using Loom.Inference.Sampling;

namespace Loom.Cluster.Rpc;

/// <summary>Engine contracts to and from their protobuf messages (field for field; no policy here).</summary>
internal static class RpcMapping
{
    public static GenerateRequest ToRpc(string baseModel, GenerationRequest r)
    {
        if (r.PromptTokenIds is null) throw new ArgumentException("a remote generation takes prompt token ids (API nodes tokenize)");
        if (r.Sampling.Grammar is not null)
            throw new ArgumentException("constrained output (a JSON schema or tool calls) is not carried to remote inference nodes yet");
        var s = r.Sampling;
        var sampling = new Sampling
        {
            Temperature = s.Temperature, TopK = s.TopK, TopP = s.TopP, MinP = s.MinP, MaxTokens = s.MaxTokens, IgnoreEos = s.IgnoreEos,
            PresencePenalty = s.PresencePenalty, FrequencyPenalty = s.FrequencyPenalty, RepetitionPenalty = s.RepetitionPenalty,
        };
        if (s.Seed is { } seed) sampling.Seed = seed;
        if (s.Logprobs is { } lp) sampling.Logprobs = lp;
        sampling.StopTokenIds.AddRange(s.StopTokenIds);
        sampling.StopStrings.AddRange(s.StopStrings);
        foreach (var (k, v) in s.LogitBias) sampling.LogitBias[k] = v;
        var request = new GenerateRequest
        {
            BaseModel = baseModel, AdapterId = r.AdapterId ?? "", TenantId = r.TenantId ?? "", Priority = r.Priority, TenantShare = r.TenantShare,
            Sampling = sampling,
        };
        request.PromptTokenIds.AddRange(r.PromptTokenIds);
        return request;
    }

    public static GenerationRequest FromRpc(GenerateRequest r)
    {
        var s = r.Sampling ?? new Sampling();
        return new GenerationRequest
        {
            PromptTokenIds = [.. r.PromptTokenIds], AdapterId = r.AdapterId.Length == 0 ? null : r.AdapterId,
            TenantId = r.TenantId.Length == 0 ? null : r.TenantId, Priority = r.Priority, TenantShare = r.TenantShare,
            Sampling = new SamplingParams
            {
                Temperature = s.Temperature, TopK = s.TopK, TopP = s.TopP, MinP = s.MinP, Seed = s.HasSeed ? s.Seed : null, MaxTokens = s.MaxTokens,
                StopTokenIds = [.. s.StopTokenIds], StopStrings = [.. s.StopStrings], IgnoreEos = s.IgnoreEos, Logprobs = s.HasLogprobs ? s.Logprobs : null,
                LogitBias = s.LogitBias.ToDictionary(kv => kv.Key, kv => kv.Value), PresencePenalty = s.PresencePenalty,
                FrequencyPenalty = s.FrequencyPenalty, RepetitionPenalty = s.RepetitionPenalty,
            },
        };
    }

    public static GenerateEvent ToRpc(GenerationEvent e)
    {
        var m = new GenerateEvent { Text = e.Text, Finish = e.FinishReason switch { FinishReason.Stop => Finish.Stop, FinishReason.Length => Finish.Length, _ => Finish.None } };
        if (e.TokenId is { } id) m.TokenId = id;
        if (e.Usage is { } u) { m.PromptTokens = u.PromptTokens; m.CompletionTokens = u.CompletionTokens; }
        if (e.Logprobs is { } lp)
        {
            m.Logprobs = new Logprobs { TokenId = lp.TokenId, Logprob = lp.Logprob };
            foreach (var a in lp.Top)
            {
                var alt = new Alternative { TokenId = a.TokenId, Logprob = a.Logprob };
                if (a.Text is not null) alt.Text = a.Text;
                m.Logprobs.Top.Add(alt);
            }
        }
        return m;
    }

    public static GenerationEvent FromRpc(GenerateEvent m)
    {
        FinishReason? finish = m.Finish switch { Finish.Stop => FinishReason.Stop, Finish.Length => FinishReason.Length, _ => null };
        return new GenerationEvent
        {
            TokenId = m.HasTokenId ? m.TokenId : null, Text = m.Text, FinishReason = finish,
            Usage = finish is null ? null : new TokenUsage(m.PromptTokens, m.CompletionTokens),
            Logprobs = m.Logprobs is { } lp
                ? new TokenLogprobs(lp.TokenId, lp.Logprob, [.. lp.Top.Select(a => new TokenAlternative(a.TokenId, a.Logprob, a.HasText ? a.Text : null))])
                : null,
        };
    }
}
