namespace Loom.Inference.Tokenization;

/// <summary>A loaded Hugging Face tokenizer (tokenizer.json + tokenizer_config.json). Load one with
/// <see cref="TokenizerLoader.Load"/>.</summary>
public interface ITokenizer
{
    int VocabSize { get; }
    int? BosTokenId { get; }

    /// <summary>Ids that end generation: eos_token, generation_config.json's eos_token_id, and the chat
    /// template's end-of-turn token (&lt;|im_end|&gt;, &lt;|eot_id|&gt;) when present.</summary>
    IReadOnlyList<int> EosTokenIds { get; }

    /// <summary>Encodes text; when <paramref name="addSpecialTokens"/> is set, adds BOS the way the tokenizer's post-processor does.
    /// Added tokens in the text are matched literally. A lone surrogate is encoded as U+FFFD.</summary>
    int[] Encode(string text, bool addSpecialTokens = false);

    /// <summary>Decodes ids to text; invalid UTF-8 becomes U+FFFD. Ids with no token (negative, or past the
    /// vocabulary, such as embedding padding rows) contribute nothing.</summary>
    string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = true);

    /// <summary>A decoder that takes one id at a time and only emits complete UTF-8 text.</summary>
    IStreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = true);

    // The members below have defaults so that other implementations (test fakes) keep compiling.

    /// <summary>The id of a vocabulary or added token, or null.</summary>
    int? TokenToId(string token) => null;

    /// <summary>The token string of an id (in the model's own alphabet, e.g. "Ġthe" or "▁the"), or null.</summary>
    string? IdToToken(int id) => null;

    /// <summary>True for added tokens marked special (skipped by decoding with skipSpecialTokens).</summary>
    bool IsSpecial(int id) => false;

    /// <summary>The bytes an id contributes to decoded output (before UTF-8 decoding), or null for an id with no
    /// token. Constrained decoding matches these against a grammar.</summary>
    byte[]? TokenBytes(int id) => null;

    IReadOnlyList<AddedToken> AddedTokens => [];

    /// <summary>The chat template from tokenizer_config.json, or null when it has none.</summary>
    /// <exception cref="TokenizerFormatException">The template is not one of the supported families.</exception>
    ChatTemplate? ChatTemplate => null;
}

public interface IStreamingDecoder
{
    /// <summary>Adds one token; returns the text that became complete (possibly empty).</summary>
    string Push(int tokenId);

    /// <summary>Flushes whatever is pending at end of stream (incomplete bytes become U+FFFD).</summary>
    string Flush();
}
