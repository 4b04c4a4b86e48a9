namespace Loom.Inference.Tokenization;

/// <summary>Loads a Hugging Face tokenizer from a model folder.</summary>
public static class TokenizerLoader
{
    /// <summary>Reads <c>tokenizer.json</c> (required), <c>tokenizer_config.json</c> and
    /// <c>generation_config.json</c> (both optional) from <paramref name="modelDirectory"/>.</summary>
    /// <exception cref="TokenizerFormatException">A file is missing, malformed or uses an unsupported feature.</exception>
    public static ITokenizer Load(string modelDirectory)
    {
        ArgumentNullException.ThrowIfNull(modelDirectory);
        string? Optional(string name)
        {
            var path = Path.Combine(modelDirectory, name);
            return File.Exists(path) ? path : null;
        }
        return LoadFiles(Path.Combine(modelDirectory, "tokenizer.json"), Optional("tokenizer_config.json"),
            Optional("generation_config.json"));
    }

    /// <summary>Loads from explicit file paths; the config files may be null.</summary>
    public static ITokenizer LoadFiles(string tokenizerJsonPath, string? tokenizerConfigPath = null,
        string? generationConfigPath = null)
    {
        var file = new JsonFile(tokenizerJsonPath);
        using var doc = file.Parse();
        var root = file.RequireObject(doc.RootElement, "$");
        var added = TokenizerJsonReader.ReadAddedTokens(file, root);
        var model = TokenizerJsonReader.ReadModel(file, root, added.Count, out var maxId);
        var limit = model.Vocab.Count + added.Count;
        foreach (var token in added)
        {
            if (token.Id < 0 || token.Id >= limit)
                throw file.Fail($"added token \"{token.Content}\" has id {token.Id}, outside [0, {limit}) (vocab entries + added tokens)");
            maxId = Math.Max(maxId, token.Id);
        }
        var normalizer = Normalizer.Parse(file, file.OptionalObject(root, "normalizer", "$"));
        var preTokenizer = PreTokenizer.Parse(file, file.OptionalObject(root, "pre_tokenizer", "$"));
        var decoder = TokenDecoder.Parse(file, file.OptionalObject(root, "decoder", "$"));
        var (prefix, suffix) = TokenizerJsonReader.ReadPostProcessor(file, file.OptionalObject(root, "post_processor", "$"));
        foreach (var id in prefix.Concat(suffix))
            if (id < 0 || id > maxId) throw file.Fail($"'post_processor' adds id {id}, which is not in the vocabulary");

        var config = TokenizerConfig.Read(tokenizerConfigPath, generationConfigPath);
        var settings = BuildSettings(model, added, prefix, suffix, config);
        return new BpeTokenizer(model, normalizer, preTokenizer, decoder, added, maxId + 1, settings);
    }

    private static TokenizerSettings BuildSettings(BpeModel model, List<AddedToken> added, List<int> prefix,
        List<int> suffix, TokenizerConfig config)
    {
        int? IdOf(string? token, string field)
        {
            if (token is null) return null;
            foreach (var a in added)
                if (a.Content == token) return a.Id;
            if (model.Vocab.TryGetValue(token, out var id)) return id;
            throw new TokenizerFormatException(config.Path ?? "tokenizer_config.json",
                $"'{field}' is \"{token}\", which is not a token of tokenizer.json");
        }

        var bos = IdOf(config.BosToken, "bos_token");
        var eos = IdOf(config.EosToken, "eos_token");
        if (bos is { } b)
        {
            if (config.AddBosToken == true && !prefix.Contains(b)) prefix.Insert(0, b);
            if (config.AddBosToken == false) prefix.RemoveAll(id => id == b);
        }
        if (eos is { } e)
        {
            if (config.AddEosToken == true && !suffix.Contains(e)) suffix.Add(e);
            if (config.AddEosToken == false) suffix.RemoveAll(id => id == e);
        }
        bos ??= prefix.Count > 0 ? prefix[0] : null;

        var eosIds = new List<int>();
        void AddEos(int? id)
        {
            if (id is { } value && !eosIds.Contains(value)) eosIds.Add(value);
        }
        AddEos(eos);
        foreach (var id in config.GenerationEosIds) AddEos(id);
        if (config.ChatTemplate is { } text && ChatTemplate.DetectFamily(text) is { } family)
        {
            var endOfTurn = family switch
            {
                ChatTemplateFamily.ChatMl => "<|im_end|>",
                ChatTemplateFamily.Llama3 => "<|eot_id|>",
                _ => null,
            };
            AddEos(added.FirstOrDefault(a => a.Content == endOfTurn)?.Id);
        }

        ChatTemplate? Template()
        {
            if (config.ChatTemplate is null) return null;
            try
            {
                return ChatTemplate.FromTokenizerConfig(config.ChatTemplate, config.BosToken, config.EosToken);
            }
            catch (NotSupportedException ex)
            {
                throw new TokenizerFormatException(config.Path ?? "tokenizer_config.json", ex.Message, ex);
            }
        }
        return new TokenizerSettings(prefix, suffix, bos, eosIds, Template);
    }
}
