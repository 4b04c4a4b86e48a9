using Loom.Data;
using Loom.Data.Entities;
using Loom.Inference.Engine;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Loom.Web.Hosting;

internal static class ServedModelRegistration
{
    /// <summary>
    /// An inference node registers the base model it serves (loading it now, so the first request does not
    /// pay for it): the model then appears in /v1/models and can be named in requests.
    /// </summary>
    public static async Task RegisterServedModelAsync(this WebApplication app)
    {
        var options = app.Services.GetRequiredService<IOptions<InferenceOptions>>().Value;
        if (string.IsNullOrWhiteSpace(options.ModelDirectory)) return;
        var served = app.Services.GetRequiredService<IInferenceEngine>().Model;

        await using var scope = app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<PlatformDbContext>();
        var path = Path.GetFullPath(options.ModelDirectory);
        var row = await db.BaseModels.SingleOrDefaultAsync(m => m.Name == served.Name);
        if (row is null)
        {
            db.BaseModels.Add(new BaseModel { Id = Guid.NewGuid(), Name = served.Name, Path = path, ContextLength = served.MaxContext, CreatedAt = DateTimeOffset.UtcNow });
            app.Logger.LogInformation("Serving base model '{Model}' from {Path}", served.Name, path);
        }
        else
        {
            row.Path = path;
            row.ContextLength = served.MaxContext;
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
