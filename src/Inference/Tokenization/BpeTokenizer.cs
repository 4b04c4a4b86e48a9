using System.Text;

namespace Loom.Inference.Tokenization;

/// <summary>A tokenizer.json BPE tokenizer: added tokens are split out first, then each remaining piece is
/// normalized, pre-tokenized and encoded word by word with the BPE model.
/// Input rule: a lone (unpaired) surrogate in the input is treated as U+FFFD, so it encodes as EF BF BD.</summary>
internal sealed class BpeTokenizer : ITokenizer
{
    private readonly BpeModel _model;
    private readonly Normalizer _normalizer;
    private readonly PreTokenizer _preTokenizer;
    private readonly AddedTokenMatcher _matcher;
    private readonly byte[]?[] _tokenBytes;   // (VocabSize) bytes each id decodes to; null for unused ids
    private readonly bool[] _isSpecial;       // (VocabSize)
    private readonly string?[] _idToToken;    // (VocabSize)
    private readonly Dictionary<string, int> _added;
    private readonly Lazy<ChatTemplate?> _chatTemplate;

    internal BpeTokenizer(BpeModel model, Normalizer normalizer, PreTokenizer preTokenizer, TokenDecoder decoder,
        IReadOnlyList<AddedToken> addedTokens, int vocabSize, TokenizerSettings settings)
    {
        _model = model;
        _normalizer = normalizer;
        _preTokenizer = preTokenizer;
        _matcher = new AddedTokenMatcher(addedTokens);
        VocabSize = vocabSize;
        _idToToken = new string?[vocabSize];
        _tokenBytes = new byte[]?[vocabSize];
        _isSpecial = new bool[vocabSize];
        foreach (var (token, id) in model.Vocab)
        {
            _idToToken[id] = token;
            _tokenBytes[id] = decoder.TokenBytes(token);
        }
        _added = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var token in addedTokens)
        {
            _idToToken[token.Id] = token.Content;
            _tokenBytes[token.Id] = Encoding.UTF8.GetBytes(token.Content);
            _isSpecial[token.Id] = token.Special;
            _added[token.Content] = token.Id;
        }
        LeadingSpacesToStrip = decoder.LeadingSpacesToStrip;
        AddedTokens = addedTokens;
        PrefixIds = settings.PrefixIds;
        SuffixIds = settings.SuffixIds;
        BosTokenId = settings.BosTokenId;
        EosTokenIds = settings.EosTokenIds;
        _chatTemplate = new Lazy<ChatTemplate?>(settings.ChatTemplate);
    }

    public int VocabSize { get; }
    public int? BosTokenId { get; }
    public IReadOnlyList<int> EosTokenIds { get; }
    public IReadOnlyList<AddedToken> AddedTokens { get; }
    public IReadOnlyList<int> PrefixIds { get; }
    public IReadOnlyList<int> SuffixIds { get; }
    public ChatTemplate? ChatTemplate => _chatTemplate.Value;
    internal int LeadingSpacesToStrip { get; }

    public int? TokenToId(string token) =>
        _added.TryGetValue(token, out var id) || _model.Vocab.TryGetValue(token, out id) ? id : null;

    public string? IdToToken(int id) => (uint)id < (uint)VocabSize ? _idToToken[id] : null;

    public bool IsSpecial(int id) => (uint)id < (uint)VocabSize && _isSpecial[id];

    public byte[]? TokenBytes(int id) => BytesOf(id, skipSpecialTokens: false);

    public int[] Encode(string text, bool addSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = ReplaceLoneSurrogates(text);
        var ids = new List<int>(text.Length / 3 + 4);
        if (addSpecialTokens) ids.AddRange(PrefixIds);
        _matcher.Split(text,
            (piece, offset) =>
            {
                var normalized = _normalizer.Apply(piece);
                foreach (var word in _preTokenizer.Split(normalized, atStart: offset == 0))
                    _model.EncodeWord(word, ids);
            },
            token => ids.Add(token.Id));
        if (addSpecialTokens) ids.AddRange(SuffixIds);
        return ids.ToArray();
    }

    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = true)
    {
        var decoder = new StreamingDecoder(this, skipSpecialTokens);
        var text = new StringBuilder();
        foreach (var id in ids) text.Append(decoder.Push(id));
        text.Append(decoder.Flush());
        return text.ToString();
    }

    public IStreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = true) =>
        new StreamingDecoder(this, skipSpecialTokens);

    /// <summary>The bytes id decodes to, or null when it is skipped: a special token while skipping them, or an id
    /// with no token (the model's embedding may have padding rows past the tokenizer's vocabulary; like HF
    /// tokenizers, decoding ignores such ids rather than failing a generation).</summary>
    internal byte[]? BytesOf(int id, bool skipSpecialTokens)
    {
        if ((uint)id >= (uint)VocabSize || _tokenBytes[id] is not { } bytes) return null;
        return skipSpecialTokens && _isSpecial[id] ? null : bytes;
    }

    internal static string ReplaceLoneSurrogates(string text)
    {
        StringBuilder? fixedText = null;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (!char.IsSurrogate(c)) { fixedText?.Append(c); continue; }
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                fixedText?.Append(c).Append(text[i + 1]);
                i++;
                continue;
            }
            fixedText ??= new StringBuilder(text.Length).Append(text, 0, i);
            fixedText.Append('\uFFFD');
        }
        return fixedText?.ToString() ?? text;
    }
}
