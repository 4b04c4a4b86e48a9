using Loom.Data;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Quartz;

namespace Loom.Jobs;

/// <summary>
/// Entry point of the background-jobs module (role "jobs"): a Quartz scheduler clustered on the
/// platform's PostgreSQL, so several job nodes share one store and a dead node's jobs are recovered.
/// </summary>
public static class JobsModule
{
    public static IServiceCollection AddJobs(this IServiceCollection services, IConfiguration configuration)
    {
        var connectionString = configuration.GetConnectionString(DataModule.ConnectionStringName)
            ?? throw new InvalidOperationException($"Connection string 'ConnectionStrings:{DataModule.ConnectionStringName}' is not configured.");
        services.AddQuartz(q =>
        {
            q.ConfigureScheduler(o => { o.InstanceName = "loom"; o.GenerateInstanceId = true; });
            q.UsePersistentStore(s =>
            {
                s.UsePostgres(connectionString);
                s.UseClustering(c => c.CheckinInterval = TimeSpan.FromSeconds(5));
                s.UseSystemTextJsonSerializer();
                s.ProvisionSchema();
            });
        });
        services.AddQuartzHostedService(o => o.WaitForJobsToComplete = true);
        return services;
    }
}
