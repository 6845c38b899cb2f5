export { grants, isScope, SCOPES, type Scope } from "./scopes.js";
export {
  InvalidToken,
  type MintOptions,
  mintToken,
  type Principal,
  secretKey,
  verificationKey,
  verifyToken,
} from "./tokens.js";
