using Loom.Api;
using Loom.Data;
using Loom.Inference;
using Loom.Jobs;
using Loom.Web.Hosting;
using Loom.Web.Portal;

var builder = WebApplication.CreateBuilder(args);
var roles = LoomRoles.From(builder.Configuration);

builder.Services.AddLoomDataProtection(builder.Configuration);
builder.Services.AddData(builder.Configuration);
if (roles.Inference) builder.Services.AddInference(builder.Configuration);
if (roles.Api) builder.Services.AddApi(builder.Configuration);
if (roles.Jobs) builder.Services.AddJobs(builder.Configuration);
if (roles.Web) builder.Services.AddPortal(builder.Configuration);

var app = builder.Build();
if (!await app.PrepareDatabaseAsync(builder.Configuration)) return 2;
if (!await app.SeedAsync()) return 1;
if (roles.Inference) await app.RegisterServedModelAsync();

app.MapHealth();
if (roles.Api) app.MapApi();
if (roles.Web) app.MapPortal();

app.Logger.LogInformation("Loom started with roles {Roles}", roles);
await app.RunAsync();
return 0;

/// <summary>Visible to WebApplicationFactory in the tests.</summary>
public partial class Program;
