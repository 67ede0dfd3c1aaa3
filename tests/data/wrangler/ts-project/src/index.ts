export default {
  async fetch(request: Request): Promise<Response> {
    return new Response("typed");
  },
} satisfies ExportedHandler;
