using Loom.Inference.Tokenization;

namespace Loom.Inference.Engine;

/// <summary>The prompt of a request as token ids: given ids, or the text encoded with the model's tokenizer.</summary>
internal static class PromptTokens
{
    public static int[] Of(GenerationRequest r, ITokenizer? tokenizer)
    {
        if (r.PromptTokenIds is { } ids)
        {
            if (r.Prompt != null) throw new ArgumentException("give either Prompt or PromptTokenIds, not both");
            return ids.ToArray();
        }
        if (r.Prompt is null) throw new ArgumentException("the request has no prompt");
        if (tokenizer is null) throw new InvalidOperationException("this model has no tokenizer; send PromptTokenIds");
        return tokenizer.Encode(r.Prompt, r.AddSpecialTokens);
    }
}
