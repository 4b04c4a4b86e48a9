using System.Text.Json;
using Loom.Data.Entities;

namespace Loom.Jobs.Events;

public static class JobEventRows
{
    public static JobEventMessage ToMessage(JobEvent e)
    {
        using var doc = JsonDocument.Parse(e.Payload);
        return new JobEventMessage(e.JobId, e.Seq, e.CreatedAt, e.Kind, doc.RootElement.Clone());
    }
}
