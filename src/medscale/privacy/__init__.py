"""Patient privacy: pseudonyms, demographics banding, credential masking, the store audit."""

from medscale.privacy.pseudonyms import PseudonymKey, load_pseudonym_key
from medscale.privacy.secrets import mask_credentials

__all__ = ["PseudonymKey", "load_pseudonym_key", "mask_credentials"]
