// A console program on the herald client, for plain .NET or Mono:
//   mcs -r:Herald.dll Program.cs && mono Program.exe ws://127.0.0.1:8080 player-1
// then, from another terminal:
//   curl -d 'Sword x1' 'localhost:8080/v1/send?key=player-1'
using System;
using System.Threading;
using Herald;

static class ConsoleSample
{
    static int Main(string[] args)
    {
        if (args.Length < 2)
        {
            Console.Error.WriteLine("usage: mono Program.exe <ws://node> <key>");
            return 2;
        }
        var client = new HeraldClient(new HeraldOptions { Urls = new[] { args[0] }, Key = args[1] });
        client.Connected += url => Console.WriteLine("connected to " + url);
        client.Disconnected += d => Console.WriteLine("disconnected: " + d);
        client.Error += e => Console.Error.WriteLine("error: " + e.Message);
        client.Message += m => Console.WriteLine("message " + m.Id + ": " + m.DataJson);
        client.Connect();
        // A console app has no main loop of its own: this loop is the tick.
        while (!client.Stopped)
        {
            client.Dispatch();
            Thread.Sleep(20);
        }
        client.Dispatch();
        return 0;
    }
}
