using System.Text.Json;
using System.Text.RegularExpressions;
using Loom.Api.Errors;
using Loom.Inference.Formats;

namespace Loom.Api.FineTuning;

/// <summary>POST /v1/fine_tuning/jobs as parsed and checked: OpenAI's fields (hyperparameters as numbers or "auto",
/// at the top level or in <c>method.supervised.hyperparameters</c>) plus Loom's LoRA settings <c>rank</c>,
/// <c>alpha</c> and <c>target_modules</c> (in the hyperparameters or at the top level). Null: "auto" / not given.</summary>
public sealed partial record CreateFineTuneRequest(
    string Model, string TrainingFile, string? ValidationFile, string? Suffix, long? Seed,
    int? Epochs, int? BatchSize, double? LearningRateMultiplier, int? Rank, double? Alpha, IReadOnlyList<LoraTarget>? TargetModules)
{
    public const int MaxEpochs = 50;
    public const int MaxBatchSize = 256;
    public const double MaxLearningRateMultiplier = 100;

    [GeneratedRegex("^[A-Za-z0-9_-]{1,40}$")]
    private static partial Regex SuffixPattern();

    /// <summary>Parses the body; throws <see cref="ApiRequestException"/> (400) naming the first bad parameter.</summary>
    public static CreateFineTuneRequest Parse(JsonElement body)
    {
        if (body.ValueKind != JsonValueKind.Object) throw ApiRequestException.BadRequest("The request body must be a JSON object.");
        string model = RequiredString(body, "model", 200);
        string training = RequiredString(body, "training_file", 100);
        string? validation = OptionalString(body, "validation_file", 100);
        string? suffix = OptionalString(body, "suffix", 40);
        if (suffix is not null && !SuffixPattern().IsMatch(suffix))
            throw ApiRequestException.BadRequest("'suffix' must be 1-40 characters: letters, digits, '-' or '_'.", "suffix");
        long? seed = null;
        if (Present(body, "seed", out var s))
        {
            if (s.ValueKind != JsonValueKind.Number || !s.TryGetInt64(out var v) || v < 0 || v > int.MaxValue)
                throw ApiRequestException.BadRequest($"'seed' must be an integer between 0 and {int.MaxValue}.", "seed");
            seed = v;
        }

        JsonElement? hp = null;
        string hpName = "hyperparameters";
        if (Present(body, "hyperparameters", out var top))
        {
            if (top.ValueKind != JsonValueKind.Object) throw ApiRequestException.BadRequest("'hyperparameters' must be an object.", "hyperparameters");
            hp = top;
        }
        if (Present(body, "method", out var method))
        {
            if (method.ValueKind != JsonValueKind.Object) throw ApiRequestException.BadRequest("'method' must be an object.", "method");
            if (!method.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String || type.GetString() != "supervised")
                throw ApiRequestException.BadRequest("'method.type' must be 'supervised' (the only method Loom trains).", "method.type");
            if (Present(method, "supervised", out var sup))
            {
                if (sup.ValueKind != JsonValueKind.Object) throw ApiRequestException.BadRequest("'method.supervised' must be an object.", "method.supervised");
                if (Present(sup, "hyperparameters", out var mhp))
                {
                    if (mhp.ValueKind != JsonValueKind.Object)
                        throw ApiRequestException.BadRequest("'method.supervised.hyperparameters' must be an object.", "method.supervised.hyperparameters");
                    if (hp is not null)
                        throw ApiRequestException.BadRequest("Give the hyperparameters either at the top level or in 'method.supervised', not both.", "hyperparameters");
                    hp = mhp;
                    hpName = "method.supervised.hyperparameters";
                }
            }
        }

        int? epochs = null, batch = null, rank = null;
        double? lr = null, alpha = null;
        IReadOnlyList<LoraTarget>? targets = null;
        if (hp is { } h)
        {
            epochs = IntOrAuto(h, "n_epochs", hpName, 1, MaxEpochs);
            batch = IntOrAuto(h, "batch_size", hpName, 1, MaxBatchSize);
            lr = NumberOrAuto(h, "learning_rate_multiplier", hpName, MaxLearningRateMultiplier);
        }
        // Loom's LoRA extension: in the hyperparameters, or at the top level.
        foreach (var (where, prefix) in new[] { (hp, hpName + "."), ((JsonElement?)body, "") })
        {
            if (where is not { } w) continue;
            rank ??= IntOrAuto(w, "rank", prefix.TrimEnd('.'), 1, 128);
            alpha ??= NumberOrAuto(w, "alpha", prefix.TrimEnd('.'), 1024);
            targets ??= Targets(w, prefix + "target_modules");
        }
        return new CreateFineTuneRequest(model, training, validation, suffix, seed, epochs, batch, lr, rank, alpha, targets);
    }

    private static bool Present(JsonElement o, string name, out JsonElement value) =>
        o.TryGetProperty(name, out value) && value.ValueKind != JsonValueKind.Null;

    private static string RequiredString(JsonElement body, string name, int maxLength) =>
        OptionalString(body, name, maxLength) ?? throw ApiRequestException.BadRequest($"'{name}' is required.", name);

    private static string? OptionalString(JsonElement body, string name, int maxLength)
    {
        if (!Present(body, name, out var v)) return null;
        if (v.ValueKind != JsonValueKind.String) throw ApiRequestException.BadRequest($"'{name}' must be a string.", name);
        var s = v.GetString()!.Trim();
        if (s.Length == 0) throw ApiRequestException.BadRequest($"'{name}' must not be empty.", name);
        if (s.Length > maxLength) throw ApiRequestException.BadRequest($"'{name}' must be at most {maxLength} characters.", name);
        return s;
    }

    private static string Param(string parent, string name) => parent.Length == 0 ? name : $"{parent}.{name}";

    private static int? IntOrAuto(JsonElement o, string name, string parent, int min, int max)
    {
        if (!Present(o, name, out var v) || v.ValueKind == JsonValueKind.String && v.GetString() == "auto") return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out var i) || i < min || i > max)
            throw ApiRequestException.BadRequest($"'{Param(parent, name)}' must be \"auto\" or an integer between {min} and {max}.", Param(parent, name));
        return i;
    }

    private static double? NumberOrAuto(JsonElement o, string name, string parent, double max)
    {
        if (!Present(o, name, out var v) || v.ValueKind == JsonValueKind.String && v.GetString() == "auto") return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out var d) || !(d > 0) || d > max)
            throw ApiRequestException.BadRequest($"'{Param(parent, name)}' must be \"auto\" or a number greater than 0 and at most {max}.", Param(parent, name));
        return d;
    }

    private static IReadOnlyList<LoraTarget>? Targets(JsonElement o, string param)
    {
        if (!Present(o, "target_modules", out var v)) return null;
        if (v.ValueKind != JsonValueKind.Array || v.GetArrayLength() is 0 or > 7)
            throw ApiRequestException.BadRequest($"'{param}' must be a list of 1-7 module names ({string.Join(", ", AllTargets)}).", param);
        var list = new List<LoraTarget>();
        foreach (var e in v.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.String || !LoraTargets.TryParse(e.GetString()!, out var t))
                throw ApiRequestException.BadRequest($"'{param}' names an unknown module; known: {string.Join(", ", AllTargets)}.", param);
            if (list.Contains(t)) throw ApiRequestException.BadRequest($"'{param}' repeats '{e.GetString()}'.", param);
            list.Add(t);
        }
        return list;
    }

    private static IEnumerable<string> AllTargets => Enum.GetValues<LoraTarget>().Select(LoraTargets.Name);
}
