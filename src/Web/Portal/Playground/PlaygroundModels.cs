using Loom.Api.Adapters;
using Loom.Api.FineTuning;
using Loom.Data;
using Microsoft.EntityFrameworkCore;

namespace Loom.Web.Portal.Playground;

/// <summary>A model the tenant may chat with: a base model, one of its adapters or fine-tuned models, or a checkpoint.</summary>
public sealed record PlaygroundModel(string Name, string Kind, string? BaseModel);

/// <summary>The models of the playground's picker: every base model an engine serves now, then the tenant's uploaded adapters, fine-tuned
/// models and fine-tune checkpoints (<c>&lt;fine-tuned model&gt;:ckpt-step-N</c>), all through the tenant query filter.</summary>
public sealed class PlaygroundModels(PlatformDbContext db, AdapterService adapters, FineTuneService fineTunes, Loom.Cluster.IInferenceClient engines)
{
    public const string BaseKind = "base model";
    public const string AdapterKind = "adapter";
    public const string FineTunedKind = "fine-tuned model";
    public const string CheckpointKind = "checkpoint";

    public async Task<List<PlaygroundModel>> ListAsync(CancellationToken ct)
    {
        var models = (await Loom.Api.Models.LiveBaseModels.ListAsync(db, engines, ct)).Select(m => new PlaygroundModel(m.Name, BaseKind, null)).ToList();
        var results = (await db.FineTuneJobs.AsNoTracking().Where(j => j.ResultAdapterId != null).Select(j => j.ResultAdapterId!.Value).ToListAsync(ct)).ToHashSet();

        var checkpoints = await db.FineTuneCheckpoints.AsNoTracking()
            .Join(db.FineTuneJobs.AsNoTracking(), c => c.JobId, j => j.Id, (c, j) => new { c.Step, Job = j })
            .OrderByDescending(x => x.Job.CreatedAt).ThenByDescending(x => x.Step).ToListAsync(ct);
        var baseNames = await db.BaseModels.AsNoTracking().ToDictionaryAsync(m => m.Id, m => m.Name, ct);
        var names = new Dictionary<Guid, string>();
        var checkpointModels = new List<PlaygroundModel>();
        foreach (var c in checkpoints)
        {
            if (!names.TryGetValue(c.Job.Id, out var model)) names[c.Job.Id] = model = await fineTunes.ModelNameAsync(c.Job, ct);
            checkpointModels.Add(new PlaygroundModel(FineTuneIds.CheckpointModelName(model, c.Step), CheckpointKind, baseNames.GetValueOrDefault(c.Job.BaseModelId)));
        }

        // A checkpoint is served as an adapter row of the same name: listed once, as a checkpoint.
        var checkpointNames = checkpointModels.Select(m => m.Name).ToHashSet(StringComparer.Ordinal);
        var all = (await adapters.ListAsync(ct)).Where(a => !checkpointNames.Contains(a.Name)).ToList();
        models.AddRange(all.Where(a => !results.Contains(a.Id)).Select(a => new PlaygroundModel(a.Name, AdapterKind, a.BaseModel!.Name)));
        models.AddRange(all.Where(a => results.Contains(a.Id)).Select(a => new PlaygroundModel(a.Name, FineTunedKind, a.BaseModel!.Name)));
        models.AddRange(checkpointModels);
        return models;
    }
}
