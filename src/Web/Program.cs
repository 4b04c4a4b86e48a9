using Loom.Api;
using Loom.Cluster;
using Loom.Data;
using Loom.Inference;
using Loom.Data.Entities;
using Loom.Jobs;
using Loom.Jobs.Dashboard;
using Loom.Web.Hosting;
using Loom.Web.Portal;
using Loom.Web.Realtime;

var builder = WebApplication.CreateBuilder(args);
var roles = LoomRoles.From(builder.Configuration);

builder.Services.AddLoomDataProtection();
builder.Services.AddLoomTelemetry(builder.Configuration, roles);
builder.Services.AddLoomProxy(builder.Configuration);
builder.Services.AddData(builder.Configuration);
if (roles.Inference) builder.Services.AddInference(builder.Configuration).AddEngineAdapters();
// The portal runs uploads, listings and playground chats through the API's services.
if (roles.Api || roles.Web) builder.Services.AddApi(builder.Configuration);
// Every role enqueues jobs and publishes job events; only the jobs role runs a Hangfire server.
builder.Services.AddJobs(builder.Configuration, runServer: roles.Jobs);
if (roles.Web) builder.Services.AddPortal(builder.Configuration).AddRealtime();
// How completions reach an engine: this process's own, or inference nodes over gRPC (which then register and beat).
builder.AddLoomCluster(inference: roles.Inference, apiOrWeb: roles.Api || roles.Web);

var app = builder.Build();
if (!await app.PrepareDatabaseAsync(builder.Configuration)) return 2;
if (!await app.SeedAsync()) return 1;
if (roles.Inference) await app.RegisterServedModelAsync();

app.UseLoomProxy();
app.UseLoomCluster();
app.MapTelemetry();
app.MapHealth();
if (roles.Api) app.MapApi();
if (roles.Web)
{
    app.MapPortal();
    app.UseJobsDashboard(LoomIdentity.AdminRole);
    app.MapRealtime();
}

app.Logger.LogInformation("Loom started with roles {Roles}", roles);
await app.RunAsync();
return 0;

/// <summary>Visible to WebApplicationFactory in the tests.</summary>
public partial class Program;
