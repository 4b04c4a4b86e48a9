using Loom.Data;
using Loom.Data.Entities;
using Loom.Inference.Engine;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Loom.Web.Hosting;

internal static class ServedModelRegistration
{
    /// <summary>
    /// An inference node fills the model registry (<c>base_models</c>) from its configuration: each base model it serves
    /// (Inference:ModelDirectory and Inference:Models), with its folder, context and weight format, loaded now so the
    /// first request does not pay for it. Which nodes serve a model is the routing table's <c>inference_nodes.Models</c>;
    /// /v1/models lists the registered models some live node serves.
    /// </summary>
    public static async Task RegisterServedModelAsync(this WebApplication app)
    {
        var options = app.Services.GetRequiredService<IOptions<InferenceOptions>>().Value;
        if (string.IsNullOrWhiteSpace(options.ModelDirectory)) return;
        var engines = app.Services.GetRequiredService<ServedEngines>();
        var configured = new List<(string Directory, Loom.Inference.Model.WeightFormat Format)> { (options.ModelDirectory, options.WeightFormat) };
        configured.AddRange(options.Models.Select(m => (m.Directory, m.WeightFormat ?? options.WeightFormat)));
        for (var i = 0; i < engines.All.Count; i++)
            await RegisterAsync(app, engines.All[i].Model, Path.GetFullPath(configured[i].Directory), configured[i].Format.ToString());
    }

    private static async Task RegisterAsync(WebApplication app, ModelInfo served, string path, string format)
    {
        await using var scope = app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<PlatformDbContext>();
        var row = await db.BaseModels.SingleOrDefaultAsync(m => m.Name == served.Name);
        if (row is null)
        {
            db.BaseModels.Add(new BaseModel
            {
                Id = Guid.NewGuid(), Name = served.Name, Path = path, ContextLength = served.MaxContext, WeightFormat = format, CreatedAt = DateTimeOffset.UtcNow,
            });
            app.Logger.LogInformation("Serving base model '{Model}' from {Path} ({Format})", served.Name, path, format);
        }
        else
        {
            row.Path = path;
            row.ContextLength = served.MaxContext;
            row.WeightFormat = format;
        }
        try
        {
            await db.SaveChangesAsync();
        }
        catch (DbUpdateException e) when (e.InnerException is Npgsql.PostgresException { SqlState: Npgsql.PostgresErrorCodes.UniqueViolation })
        {
            // Another inference node serving the same model registered it at the same moment.
            app.Logger.LogInformation("Base model '{Model}' was registered by another node", served.Name);
        }
    }
}
