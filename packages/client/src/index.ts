/**
 * `@herald/client`: Herald's API from a browser or Node 20+. The Promise face (`createClient`) for
 * any application; the Effect face (`HeraldClient`, `make`, `subscribe`) for Effect applications.
 * docs/client.md shows both.
 */
export { registerEventSource } from "./EventSources.js"
export { Frame, Position, type Status, UnreadableFrame } from "./Frame.js"
export { type ApiClient, HeraldClient, type HeraldClientOptions, type HeraldClientShape, make } from "./HeraldClient.js"
export {
  createClient,
  type CreateClientOptions,
  type Handlers,
  type HeraldPromiseClient,
  type PromiseApi,
  type Subscription
} from "./Promise.js"
export {
  type Connector,
  type EventSourceConstructor,
  type EventSourceLike,
  subscribe,
  SubscribeError,
  type SubscribeOptions
} from "./Subscription.js"
