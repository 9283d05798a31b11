#!/usr/bin/env node
// The `herald` operator CLI. TypeScript sources run through tsx's loader, like `npm start`.
import { register } from "tsx/esm/api"

register()
await import("../src/bin.ts")
