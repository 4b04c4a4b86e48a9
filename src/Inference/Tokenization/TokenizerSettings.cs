namespace Loom.Inference.Tokenization;

/// <summary>The special-token behaviour a tokenizer is built with: ids added around encoded text, BOS/EOS and the
/// chat template factory (which may throw <see cref="TokenizerFormatException"/> for an unknown template).</summary>
internal sealed record TokenizerSettings(IReadOnlyList<int> PrefixIds, IReadOnlyList<int> SuffixIds, int? BosTokenId,
    IReadOnlyList<int> EosTokenIds, Func<ChatTemplate?> ChatTemplate);
