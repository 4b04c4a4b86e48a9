using Loom.Inference.Sampling;
using Loom.Inference.Tokenization;

namespace Loom.Api.Completions;

/// <summary>Engine logprobs to OpenAI's chat and legacy logprob objects.</summary>
internal static class LogprobMapping
{
    public static TokenLogprobObject Chat(TokenLogprobs l, ITokenizer tokenizer)
    {
        var text = tokenizer.Decode([l.TokenId], skipSpecialTokens: false);
        return new TokenLogprobObject(text, l.Logprob, Sse.Utf8(text),
            l.Top.Select(a => { var t = a.Text ?? tokenizer.Decode([a.TokenId], false); return new TopLogprobObject(t, a.Logprob, Sse.Utf8(t)); }).ToList());
    }

    public static Dictionary<string, float> LegacyTop(TokenLogprobs l, ITokenizer tokenizer)
    {
        var top = new Dictionary<string, float>();
        foreach (var a in l.Top) top.TryAdd(a.Text ?? tokenizer.Decode([a.TokenId], false), a.Logprob);
        return top;
    }
}
