namespace Loom.Inference.Tokenization;

/// <summary>A loaded Hugging Face tokenizer (tokenizer.json + tokenizer_config.json).</summary>
public interface ITokenizer
{
    int VocabSize { get; }
    int? BosTokenId { get; }
    IReadOnlyList<int> EosTokenIds { get; }

    /// <summary>Encodes text; when <paramref name="addSpecialTokens"/> is set, adds BOS the way the tokenizer's post-processor does.</summary>
    int[] Encode(string text, bool addSpecialTokens = false);

    /// <summary>Decodes ids to text; invalid UTF-8 becomes U+FFFD.</summary>
    string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = true);

    /// <summary>A decoder that takes one id at a time and only emits complete UTF-8 text.</summary>
    IStreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = true);
}

public interface IStreamingDecoder
{
    /// <summary>Adds one token; returns the text that became complete (possibly empty).</summary>
    string Push(int tokenId);

    /// <summary>Flushes whatever is pending at end of stream (incomplete bytes become U+FFFD).</summary>
    string Flush();
}
