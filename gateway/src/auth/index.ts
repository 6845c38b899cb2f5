export { isScope, SCOPES, type Scope } from "./scopes.js";
export {
  InvalidToken,
  type MintOptions,
  mintToken,
  type Principal,
  secretKey,
  verifyToken,
} from "./tokens.js";
