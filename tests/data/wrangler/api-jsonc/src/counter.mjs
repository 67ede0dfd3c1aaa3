export class Counter {
  constructor(state) {
    this.state = state;
  }
  async fetch() {
    return new Response("counter");
  }
}
