using System.Text.Json;

namespace Loom.Inference.Tokenization;

/// <summary>Reads the parts of tokenizer.json: the BPE model, added tokens and the post-processor's special ids.
/// Every id must lie in [0, vocab entries + added tokens), which bounds every table built from them.</summary>
internal static class TokenizerJsonReader
{
    public static List<AddedToken> ReadAddedTokens(JsonFile file, JsonElement root)
    {
        var tokens = new List<AddedToken>();
        if (JsonFile.Optional(root, "added_tokens") is not { } list) return tokens;
        if (list.ValueKind != JsonValueKind.Array) throw file.WrongType("added_tokens", "an array", list);
        var i = 0;
        foreach (var item in list.EnumerateArray())
        {
            var where = $"added_tokens[{i++}]";
            file.RequireObject(item, where);
            var content = file.RequiredString(item, "content", where);
            if (content.Length == 0) throw file.Fail($"'{where}.content' is empty");
            tokens.Add(new AddedToken(file.AsInt(file.Required(item, "id", where), $"{where}.id"), content,
                file.OptionalBool(item, "special", where, false), file.OptionalBool(item, "lstrip", where, false),
                file.OptionalBool(item, "rstrip", where, false)));
        }
        return tokens;
    }

    public static BpeModel ReadModel(JsonFile file, JsonElement root, int addedCount, out int maxId)
    {
        var model = file.RequireObject(file.Required(root, "model", "$"), "model");
        var type = file.OptionalString(model, "type", "model") ?? "BPE";
        if (type != "BPE")
            throw file.Fail($"'model.type' is \"{type}\"; only BPE tokenizers are supported");
        var vocabElement = file.Required(model, "vocab", "model");
        if (vocabElement.ValueKind != JsonValueKind.Object) throw file.WrongType("model.vocab", "an object of token to id", vocabElement);
        var entries = 0;
        foreach (var _ in vocabElement.EnumerateObject()) entries++;
        var limit = entries + addedCount;
        var vocab = new Dictionary<string, int>(entries, StringComparer.Ordinal);
        maxId = -1;
        foreach (var entry in vocabElement.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out var id))
                throw file.WrongType($"model.vocab[\"{entry.Name}\"]", "a 32-bit integer", entry.Value);
            if (id < 0 || id >= limit)
                throw file.Fail($"'model.vocab[\"{entry.Name}\"]' is id {id}, outside [0, {limit}) (vocab entries + added tokens)");
            if (!vocab.TryAdd(entry.Name, id)) throw file.Fail($"'model.vocab' lists \"{entry.Name}\" twice");
            maxId = Math.Max(maxId, id);
        }
        if (vocab.Count == 0) throw file.Fail("'model.vocab' is empty");

        var merges = ReadMerges(file, model, vocab);
        int? unkId = null;
        if (file.OptionalString(model, "unk_token", "model") is { } unk)
            unkId = vocab.TryGetValue(unk, out var u) ? u
                : throw file.Fail($"'model.unk_token' is \"{unk}\", which is not in the vocabulary");
        foreach (var unsupported in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            if (file.OptionalString(model, unsupported, "model") is { Length: > 0 } value)
                throw file.Fail($"'model.{unsupported}' is \"{value}\", which this loader does not support");
        return new BpeModel(vocab, merges, unkId, file.OptionalBool(model, "fuse_unk", "model", false),
            file.OptionalBool(model, "byte_fallback", "model", false), file.OptionalBool(model, "ignore_merges", "model", false));
    }

    /// <summary>Merges as "left right" strings or as [left, right] pairs; rank is the position in the list.</summary>
    private static Dictionary<long, (int Rank, int Merged)> ReadMerges(JsonFile file, JsonElement model, Dictionary<string, int> vocab)
    {
        var merges = new Dictionary<long, (int, int)>();
        if (JsonFile.Optional(model, "merges") is not { } list) return merges;
        if (list.ValueKind != JsonValueKind.Array) throw file.WrongType("model.merges", "an array", list);
        var rank = 0;
        merges.EnsureCapacity(list.GetArrayLength());
        foreach (var item in list.EnumerateArray())
        {
            string left, right;
            if (item.ValueKind == JsonValueKind.String)
            {
                var text = item.GetString()!;
                var space = text.IndexOf(' ', StringComparison.Ordinal);
                if (space <= 0 || space == text.Length - 1 || text.IndexOf(' ', space + 1) >= 0)
                    throw file.Fail($"'model.merges[{rank}]' is \"{text}\"; expected two tokens separated by one space");
                (left, right) = (text[..space], text[(space + 1)..]);
            }
            else if (item.ValueKind == JsonValueKind.Array && item.GetArrayLength() == 2)
            {
                left = item[0].ValueKind == JsonValueKind.String ? item[0].GetString()! : file.AsString(item[0], $"model.merges[{rank}][0]");
                right = item[1].ValueKind == JsonValueKind.String ? item[1].GetString()! : file.AsString(item[1], $"model.merges[{rank}][1]");
            }
            else throw file.WrongType($"model.merges[{rank}]", "a \"left right\" string or a [left, right] pair", item);
            var leftId = Lookup(file, vocab, left, rank);
            var rightId = Lookup(file, vocab, right, rank);
            var mergedId = Lookup(file, vocab, left + right, rank);
            merges.TryAdd(BpeModel.PairKey(leftId, rightId), (rank, mergedId));
            rank++;
        }
        return merges;
    }

    private static int Lookup(JsonFile file, Dictionary<string, int> vocab, string token, int rank) =>
        vocab.TryGetValue(token, out var id) ? id : throw file.Fail($"'model.merges[{rank}]' names \"{token}\", which is not in the vocabulary");

    /// <summary>Special ids the post-processor puts before and after a single sequence (TemplateProcessing;
    /// ByteLevel and RobertaProcessing-free setups add none). Sequence processors are walked in order.</summary>
    public static (List<int> Prefix, List<int> Suffix) ReadPostProcessor(JsonFile file, JsonElement? element, string where = "post_processor")
    {
        var prefix = new List<int>();
        var suffix = new List<int>();
        if (element is not { } processor) return (prefix, suffix);
        file.RequireObject(processor, where);
        var type = file.RequiredString(processor, "type", where);
        switch (type)
        {
            case "ByteLevel":
                break;
            case "Sequence":
                var i = 0;
                foreach (var item in file.RequiredArray(processor, "processors", where).EnumerateArray())
                {
                    var (p, s) = ReadPostProcessor(file, item, $"{where}.processors[{i++}]");
                    prefix.AddRange(p);
                    suffix.AddRange(s);
                }
                break;
            case "TemplateProcessing":
                ReadTemplate(file, processor, where, prefix, suffix);
                break;
            default:
                throw file.Fail($"'{where}.type' is \"{type}\", which this loader does not support " +
                                "(supported: TemplateProcessing, ByteLevel, Sequence)");
        }
        return (prefix, suffix);
    }

    private static void ReadTemplate(JsonFile file, JsonElement processor, string where, List<int> prefix, List<int> suffix)
    {
        var specials = file.OptionalObject(processor, "special_tokens", where);
        var seenSequence = false;
        var i = 0;
        foreach (var item in file.RequiredArray(processor, "single", where).EnumerateArray())
        {
            var itemWhere = $"{where}.single[{i++}]";
            file.RequireObject(item, itemWhere);
            if (JsonFile.Optional(item, "Sequence") is not null) { seenSequence = true; continue; }
            var special = file.RequireObject(file.Required(item, "SpecialToken", itemWhere), $"{itemWhere}.SpecialToken");
            var name = file.RequiredString(special, "id", $"{itemWhere}.SpecialToken");
            if (specials is not { } map || JsonFile.Optional(map, name) is not { } entry)
                throw file.Fail($"'{itemWhere}' names special token \"{name}\", which '{where}.special_tokens' does not define");
            var j = 0;
            foreach (var id in file.RequiredArray(entry, "ids", $"{where}.special_tokens.{name}").EnumerateArray())
                (seenSequence ? suffix : prefix).Add(file.AsInt(id, $"{where}.special_tokens.{name}.ids[{j++}]"));
        }
    }
}
